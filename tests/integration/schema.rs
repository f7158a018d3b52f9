//! Migrations run forwards and back, and `schema.rs` is what diesel prints.

use crate::helpers::*;

#[test]
fn migrations_revert_and_reapply() {
    let db = TestDb::create();
    let reverted = souk::store::db::revert_all(&db.url).unwrap();
    assert!(reverted >= 1);
    let applied = souk::store::db::migrate(&db.url).unwrap();
    assert_eq!(applied.len(), reverted);
}

#[test]
fn committed_schema_matches_diesel_print_schema() {
    let db = TestDb::create();
    let root = env!("CARGO_MANIFEST_DIR");
    let output = std::process::Command::new("diesel")
        .args(["print-schema", "--database-url", &db.url])
        .current_dir(root)
        .output()
        .expect("diesel CLI on PATH (scripts/test installs it)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    let committed = std::fs::read_to_string(format!("{root}/src/store/schema.rs")).unwrap();
    assert_eq!(
        printed, committed,
        "src/store/schema.rs is stale: run `diesel print-schema > src/store/schema.rs`"
    );
}
