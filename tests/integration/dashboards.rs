//! The operators' dashboard (deploy/grafana/souk.json) and alert rules
//! (deploy/prometheus/alerts.yml) query only what `/metrics` really serves:
//! every souk_*/process_* name, every label they match or group by, and
//! every label value they match exactly. (scripts/test also parses both with
//! promtool.)

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::helpers::*;

/// Labels Prometheus adds at scrape time, and the histogram's bucket label.
const SCRAPE_LABELS: &[&str] = &["job", "instance", "le"];

/// One `/metrics` exposition: each sample name with the label sets it has,
/// and each family's type.
#[derive(Default)]
struct Served {
    samples: BTreeMap<String, Vec<BTreeMap<String, String>>>,
    types: BTreeMap<String, String>,
}

impl Served {
    fn parse(text: &str) -> Served {
        let mut served = Served::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut words = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                    served.types.insert(name.to_owned(), kind.to_owned());
                }
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let name = &line[..end];
            let labels = if line[end..].starts_with('{') {
                let mut chars = line[end + 1..].chars().peekable();
                parse_matchers(&mut chars)
                    .into_iter()
                    .map(|m| (m.label, m.value))
                    .collect()
            } else {
                BTreeMap::new()
            };
            served
                .samples
                .entry(name.to_owned())
                .or_default()
                .push(labels);
        }
        served
    }

    /// Every reason the query `expr` asks for something not served.
    fn problems(&self, expr: &str) -> Vec<String> {
        let query = Query::parse(expr);
        let mut problems = Vec::new();
        for selector in &query.selectors {
            let Some(series) = self.samples.get(&selector.name) else {
                problems.push(format!("{} is not served", selector.name));
                continue;
            };
            for suffix in ["_bucket", "_sum", "_count"] {
                if let Some(base) = selector.name.strip_suffix(suffix) {
                    if suffix == "_bucket"
                        && self.types.get(base).map(String::as_str) != Some("histogram")
                    {
                        problems.push(format!("{} is not a histogram's buckets", selector.name));
                    }
                }
            }
            for matcher in &selector.matchers {
                if SCRAPE_LABELS.contains(&matcher.label.as_str()) {
                    continue;
                }
                if !series
                    .iter()
                    .any(|labels| labels.contains_key(&matcher.label))
                {
                    problems.push(format!("{} has no label {}", selector.name, matcher.label));
                } else if matcher.op == "="
                    && !matcher.value.contains('$')
                    && !series
                        .iter()
                        .any(|labels| labels.get(&matcher.label) == Some(&matcher.value))
                {
                    problems.push(format!(
                        "{} has no series with {}={:?} (served: {:?})",
                        selector.name,
                        matcher.label,
                        matcher.value,
                        series
                            .iter()
                            .filter_map(|labels| labels.get(&matcher.label))
                            .collect::<BTreeSet<_>>()
                    ));
                }
            }
        }
        for label in &query.grouping {
            if SCRAPE_LABELS.contains(&label.as_str()) {
                continue;
            }
            let known = query.selectors.iter().any(|selector| {
                self.samples
                    .get(&selector.name)
                    .is_some_and(|series| series.iter().any(|l| l.contains_key(label)))
            });
            if !known {
                problems.push(format!("no metric of the query has the label {label}"));
            }
        }
        problems
    }
}

#[derive(Debug)]
struct Matcher {
    label: String,
    op: String,
    value: String,
}

#[derive(Debug)]
struct Selector {
    name: String,
    matchers: Vec<Matcher>,
}

/// What a PromQL expression asks of souk: its souk_*/process_* selectors
/// and the labels of its `by (…)` / `without (…)` clauses.
#[derive(Debug, Default)]
struct Query {
    selectors: Vec<Selector>,
    grouping: Vec<String>,
}

impl Query {
    fn parse(expr: &str) -> Query {
        let mut query = Query::default();
        let mut chars = expr.chars().peekable();
        while let Some(&c) = chars.peek() {
            if c == '"' || c == '\'' || c == '`' {
                chars.next();
                read_string(&mut chars, c);
            } else if c.is_ascii_digit() {
                // A number or a duration (5m): not a name.
                while chars
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '.')
                {
                    chars.next();
                }
            } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
                let word = read_word(&mut chars);
                skip_space(&mut chars);
                let matchers = if chars.peek() == Some(&'{') {
                    chars.next();
                    parse_matchers(&mut chars)
                } else {
                    Vec::new()
                };
                if word == "by" || word == "without" {
                    if chars.peek() == Some(&'(') {
                        chars.next();
                        query.grouping.extend(read_list(&mut chars));
                    }
                } else if word.starts_with("souk_") || word.starts_with("process_") {
                    query.selectors.push(Selector {
                        name: word,
                        matchers,
                    });
                }
            } else {
                chars.next();
            }
        }
        query
    }
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

fn skip_space(chars: &mut Chars) {
    while chars.peek().is_some_and(|c| c.is_whitespace()) {
        chars.next();
    }
}

fn read_word(chars: &mut Chars) -> String {
    let mut word = String::new();
    while let Some(&c) = chars.peek() {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            chars.next();
        } else {
            break;
        }
    }
    word
}

/// The rest of a string literal whose opening `quote` was read.
fn read_string(chars: &mut Chars, quote: char) -> String {
    let mut value = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quote != '`' => match chars.next() {
                Some('n') => value.push('\n'),
                Some(other) => value.push(other),
                None => break,
            },
            c if c == quote => break,
            c => value.push(c),
        }
    }
    value
}

/// `label, label)` after an opening parenthesis.
fn read_list(chars: &mut Chars) -> Vec<String> {
    let mut labels = Vec::new();
    loop {
        skip_space(chars);
        match chars.peek() {
            Some(')') | None => {
                chars.next();
                return labels;
            }
            Some(',') => {
                chars.next();
            }
            Some(_) => {
                let word = read_word(chars);
                if word.is_empty() {
                    chars.next();
                } else {
                    labels.push(word);
                }
            }
        }
    }
}

/// `label op "value", …}` after an opening brace (PromQL matchers and the
/// exposition format's labels alike).
fn parse_matchers(chars: &mut Chars) -> Vec<Matcher> {
    let mut matchers = Vec::new();
    loop {
        skip_space(chars);
        match chars.peek() {
            Some('}') | None => {
                chars.next();
                return matchers;
            }
            Some(',') => {
                chars.next();
            }
            Some(_) => {
                let label = read_word(chars);
                skip_space(chars);
                let mut op = String::new();
                while let Some(&c) = chars.peek() {
                    if matches!(c, '=' | '!' | '~') {
                        op.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                skip_space(chars);
                let value = match chars.next() {
                    Some(quote @ ('"' | '\'' | '`')) => read_string(chars, quote),
                    _ => String::new(),
                };
                if label.is_empty() {
                    // Not a matcher: skip to the end of the braces.
                    for c in chars.by_ref() {
                        if c == '}' {
                            return matchers;
                        }
                    }
                    return matchers;
                }
                matchers.push(Matcher { label, op, value });
            }
        }
    }
}

/// Every PromQL query of a Grafana dashboard: the panels' `expr` and the
/// query variables' `definition`.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    let mut queries = Vec::new();
    fn walk(node: &Value, queries: &mut Vec<String>) {
        match node {
            Value::Array(items) => items.iter().for_each(|item| walk(item, queries)),
            Value::Object(fields) => {
                if let Some(Value::String(expr)) = fields.get("expr") {
                    queries.push(expr.clone());
                }
                if fields.get("type") == Some(&json!("query")) {
                    if let Some(Value::String(definition)) = fields.get("definition") {
                        queries.push(definition.clone());
                    }
                }
                fields.values().for_each(|child| walk(child, queries));
            }
            _ => {}
        }
    }
    walk(dashboard, &mut queries);
    queries
}

/// Every `expr:` of a Prometheus rules file: plain, quoted, or a `|` / `>`
/// block (the forms alerts.yml uses).
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let key = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        i += 1;
        if trimmed.starts_with('#') {
            continue;
        }
        let Some(value) = key.strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let indent = line.len() - trimmed.len();
            let mut block = Vec::new();
            while i < lines.len() {
                let next = lines[i];
                let next_indent = next.len() - next.trim_start().len();
                if !next.trim().is_empty() && next_indent <= indent {
                    break;
                }
                block.push(next.trim());
                i += 1;
            }
            exprs.push(block.join("\n"));
        } else if let Some(quoted) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            exprs.push(quoted.replace("''", "'"));
        } else if let Some(quoted) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            exprs.push(quoted.replace("\\\"", "\""));
        } else {
            exprs.push(value.to_owned());
        }
    }
    exprs
}

#[actix_web::test]
async fn the_dashboard_and_alerts_query_only_what_metrics_serves() {
    let app = TestApp::spawn().await;
    // A little traffic, so the labelled series exist: events that succeed
    // and fail (and their durations), a room, deliveries, a disconnect.
    app.listing("l1", "sella").await;
    let mut ann = app.watching("ann", "l1").await;
    let ack = ann
        .emit_ack("listing:watch", json!({"listingId": "nope"}))
        .await;
    assert_eq!(ack["ok"], false, "{ack}");
    let (status, _) = app.room_event("listing:l1", "tick", json!(1)).await;
    assert_eq!(status, 202);
    ann.wait_event("tick").await;
    drop(app.connect("bob").await);
    // No traffic trips a per-client bound yet in every build: the series a
    // tripped bound makes, at 0.
    app.state
        .metrics
        .limits_tripped
        .with_label_values(&["rooms_per_socket"]);
    eventually("the delivery is counted", || async {
        let text = app.metrics().await;
        !text.contains("souk_deliveries_total 0")
            && text.contains("souk_event_duration_seconds_bucket")
    })
    .await;
    let text = app.metrics().await;
    let served = Served::parse(&text);

    let dashboard: Value = serde_json::from_str(&repo_file("deploy/grafana/souk.json")).unwrap();
    let mut queries: Vec<(String, String)> = dashboard_queries(&dashboard)
        .into_iter()
        .map(|q| ("deploy/grafana/souk.json".to_owned(), q))
        .collect();
    let alerts = repo_file("deploy/prometheus/alerts.yml");
    let exprs = rule_exprs(&alerts);
    assert_eq!(
        exprs.len(),
        alerts.matches("- alert:").count(),
        "one expr per alert: {exprs:#?}"
    );
    queries.extend(
        exprs
            .into_iter()
            .map(|q| ("deploy/prometheus/alerts.yml".to_owned(), q)),
    );

    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for (file, query) in &queries {
        names.extend(Query::parse(query).selectors.into_iter().map(|s| s.name));
        for problem in served.problems(query) {
            problems.push(format!("{file}: {problem}\n    in: {query}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n/metrics:\n{text}",
        problems.join("\n")
    );
    // What the issue asks the dashboard and the alerts to show.
    for needed in [
        "souk_connections",
        "souk_events_total",
        "souk_deliveries_total",
        "souk_event_duration_seconds_bucket",
        "souk_disconnects_total",
        "souk_connections_refused_total",
        "souk_limits_tripped_total",
        "souk_redis_ops_total",
        "souk_db_ops_total",
        "process_open_fds",
        "process_max_fds",
    ] {
        assert!(
            names.contains(needed),
            "nothing queries {needed}: {names:?}"
        );
    }
}

#[test]
fn the_check_finds_a_wrong_name_label_or_value() {
    let served = Served::parse(
        "# TYPE souk_disconnects_total counter\n\
         souk_disconnects_total{reason=\"slow consumer\"} 0\n\
         souk_disconnects_total{reason=\"transport close\"} 2\n\
         # TYPE souk_event_duration_seconds histogram\n\
         souk_event_duration_seconds_bucket{event=\"bid:place\",le=\"0.5\"} 1\n\
         # TYPE souk_db_ops_total counter\n\
         souk_db_ops_total 3\n",
    );
    let fine = [
        r#"increase(souk_disconnects_total{job="souk", reason="slow consumer"}[10m]) > 5"#,
        r#"sum by (reason) (rate(souk_disconnects_total{instance=~"$instance"}[$__rate_interval]))"#,
        "histogram_quantile(0.99, sum by (le, event) (rate(souk_event_duration_seconds_bucket[5m])))",
        "rate(souk_db_ops_total[1m]) and up == 1",
    ];
    for query in fine {
        assert_eq!(served.problems(query), Vec::<String>::new(), "{query}");
    }
    let wrong = [
        (
            r#"souk_disconnects_total{reason="slow_consumer"}"#,
            "slow_consumer",
        ),
        (
            r#"souk_disconnects_total{cause="slow consumer"}"#,
            "no label cause",
        ),
        (
            "rate(souk_db_op_total[1m])",
            "souk_db_op_total is not served",
        ),
        (
            "rate(process_open_fds[1m])",
            "process_open_fds is not served",
        ),
        (
            "sum by (outcome) (rate(souk_db_ops_total[1m]))",
            "label outcome",
        ),
        ("souk_db_ops_total_bucket", "not served"),
    ];
    for (query, problem) in wrong {
        let problems = served.problems(query);
        assert!(
            problems.iter().any(|p| p.contains(problem)),
            "{query}: {problems:?}"
        );
    }
    assert_eq!(
        rule_exprs("  - alert: A\n    expr: up == 0\n  - alert: B\n    expr: |\n      sum(\n        x)\n    for: 1m\n"),
        vec!["up == 0".to_owned(), "sum(\nx)".to_owned()]
    );
}
