//! What a run found: a two-column table for people and a JSON object for
//! programs, filled side by side.

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::Result;

enum Row {
    Section(String),
    Item(String, String),
}

pub struct Report {
    title: String,
    rows: Vec<Row>,
    json: Map<String, Value>,
}

impl Report {
    pub fn new(scenario: &str, title: String) -> Report {
        let mut json = Map::new();
        json.insert("scenario".into(), Value::String(scenario.into()));
        Report {
            title,
            rows: Vec::new(),
            json,
        }
    }

    pub fn section(&mut self, name: &str) {
        self.rows.push(Row::Section(name.into()));
    }

    pub fn item(&mut self, label: &str, value: impl Into<String>) {
        self.rows.push(Row::Item(label.into(), value.into()));
    }

    /// Sets a top-level JSON field.
    pub fn set(&mut self, key: &str, value: Value) {
        self.json.insert(key.into(), value);
    }

    /// Adds another report's rows and JSON fields (not its title or
    /// scenario) after this one's.
    pub fn append(&mut self, other: Report) {
        self.rows.extend(other.rows);
        for (key, value) in other.json {
            if key != "scenario" {
                self.json.insert(key, value);
            }
        }
    }

    /// A top-level JSON field, as set.
    #[cfg(test)]
    pub fn field(&self, key: &str) -> Option<&Value> {
        self.json.get(key)
    }

    /// The table, as printed.
    pub fn table(&self) -> String {
        let width = self
            .rows
            .iter()
            .filter_map(|row| match row {
                Row::Item(label, _) => Some(label.chars().count()),
                Row::Section(_) => None,
            })
            .max()
            .unwrap_or(0);
        let mut out = format!("{}\n", self.title);
        for row in &self.rows {
            match row {
                Row::Section(name) => out.push_str(&format!("\n{name}\n")),
                Row::Item(label, value) => {
                    out.push_str(&format!("  {label:<width$}  {value}\n"));
                }
            }
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(&Value::Object(self.json.clone()))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(())
    }
}
