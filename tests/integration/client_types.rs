//! clients/typescript/souk.d.ts types every event a node handles
//! (scripts/test compiles it with `tsc` against an example that uses them).

use crate::helpers::repo_file;

/// The quoted or bare keys of `export interface NAME { … }` in a .d.ts.
fn interface_keys(dts: &str, name: &str) -> Vec<String> {
    let start = dts
        .find(&format!("export interface {name} {{"))
        .unwrap_or_else(|| panic!("no interface {name}"));
    let body = &dts[start..];
    let body = &body[..body.find("\n}").unwrap()];
    body.lines()
        .skip(1)
        // Members sit two spaces in; deeper lines continue a signature.
        .filter_map(|line| line.strip_prefix("  "))
        .filter(|line| !line.starts_with([' ', '/', '*']))
        .filter_map(|line| match line.strip_prefix('"') {
            Some(quoted) => quoted.split_once('"').map(|(key, _)| key),
            None => line.split_once(':').map(|(key, _)| key),
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_typescript_definitions_name_every_client_event_a_node_handles() {
    let dts = repo_file("clients/typescript/souk.d.ts");
    let typed = interface_keys(&dts, "ClientToServerEvents");
    for event in souk::protocol::events::KNOWN_EVENTS {
        assert!(
            typed.iter().any(|name| name == event),
            "{event} is handled by the node but not typed in souk.d.ts: {typed:?}"
        );
    }
    let server = interface_keys(&dts, "SoukServerEvents");
    for event in souk::protocol::events::server::SERVER_EVENTS {
        assert!(
            server.iter().any(|name| name == event),
            "{event}: {server:?}"
        );
    }
}
