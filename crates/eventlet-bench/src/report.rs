//! One scenario's results: a table for people, one JSON line for programs.

use std::fmt::Write as _;

/// One measured contender in one configuration (say, tokio at 100
/// connections).
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// Who: `eventlet`, `tokio`, `may`, `mio`, `go`, `python-eventlet`, ...
    pub name: String,
    /// Which configuration (`100 conns`, ...); empty when the scenario has one.
    pub config: String,
    /// The median of the rounds, in the report's unit.
    pub median: f64,
    /// Every round's figure, in the order measured.
    pub rounds: Vec<f64>,
    /// Further columns: (heading, value), e.g. ("p99 us", "412").
    pub extra: Vec<(String, String)>,
    /// The server's CPU time per operation, where measured: the table
    /// compares eventlet's with it ("eventlet cpu/op is").
    pub per_op: Option<f64>,
}

impl Row {
    /// A row from its rounds; the median is computed here.
    pub(crate) fn new(name: &str, config: &str, rounds: Vec<f64>) -> Row {
        Row {
            name: name.into(),
            config: config.into(),
            median: median(&rounds),
            rounds,
            extra: Vec::new(),
            per_op: None,
        }
    }

    /// Sets the server CPU time per operation.
    pub(crate) fn per_op(mut self, x: f64) -> Row {
        self.per_op = Some(x);
        self
    }

    /// Adds a column.
    pub(crate) fn with(mut self, heading: &str, value: impl ToString) -> Row {
        self.extra.push((heading.into(), value.to_string()));
        self
    }

    /// Whether the row measures eventlet (`eventlet`, or a variant such as
    /// `eventlet-park`): those are not compared with the `eventlet` row.
    fn is_ours(&self) -> bool {
        self.name == "eventlet" || self.name.starts_with("eventlet-")
    }

    fn key(&self) -> String {
        if self.config.is_empty() {
            self.name.clone()
        } else {
            format!("{}@{}", self.name, self.config.split_whitespace().next().unwrap_or(""))
        }
    }
}

/// The outcome of one scenario.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    /// `echo`, `http`, `spawn`, `switch`, `memory`, `client`.
    pub scenario: String,
    /// The unit of `Row::median`: `msgs/s`, `req/s`, `ns`, `bytes`.
    pub unit: String,
    /// Whether more is better (throughput) or less is (latency, bytes).
    pub higher_is_better: bool,
    /// The measured rows.
    pub rows: Vec<Row>,
    /// Peers that were not run, with the reason (`go: not installed`).
    pub skipped: Vec<String>,
    /// Remarks printed under the table (bottlenecks, machine facts).
    pub notes: Vec<String>,
    /// Our rows compared with the others, each in columns of its own
    /// (`eventlet is`, ...): `eventlet`, and variants worth a ratio of their
    /// own (the raw HTTP handler: `eventlet-raw`).
    pub compared: Vec<String>,
}

impl Report {
    /// An empty report.
    pub(crate) fn new(scenario: &str, unit: &str, higher_is_better: bool) -> Report {
        Report {
            scenario: scenario.into(),
            unit: unit.into(),
            higher_is_better,
            rows: Vec::new(),
            skipped: Vec::new(),
            notes: Vec::new(),
            compared: vec!["eventlet".into()],
        }
    }

    /// eventlet's advantage over each other row in the same configuration:
    /// above 1 means eventlet is better, whichever way the unit points
    /// (for each of the [`compared`](Self::compared) rows).
    pub(crate) fn ratios(&self) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for ours in self.rows.iter().filter(|r| self.compared.contains(&r.name)) {
            for peer in self.rows.iter().filter(|r| !r.is_ours() && r.config == ours.config) {
                if ours.median > 0.0 && peer.median > 0.0 {
                    let x = if self.higher_is_better { ours.median / peer.median } else { peer.median / ours.median };
                    out.push((format!("{}/{}", ours.name, peer.key()), x));
                }
            }
        }
        out
    }

    /// eventlet's CPU per operation against each other row's in the same
    /// configuration: above 1 means eventlet uses less.
    pub(crate) fn cpu_ratios(&self) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for ours in self.rows.iter().filter(|r| self.compared.contains(&r.name)) {
            let Some(mine) = ours.per_op.filter(|x| *x > 0.0) else { continue };
            for peer in self.rows.iter().filter(|r| !r.is_ours() && r.config == ours.config) {
                if let Some(theirs) = peer.per_op.filter(|x| *x > 0.0) {
                    out.push((format!("{}/{}", ours.name, peer.key()), theirs / mine));
                }
            }
        }
        out
    }

    /// The human table.
    pub(crate) fn table(&self) -> String {
        let mut headings = vec!["name".to_string(), "config".into(), format!("median {}", self.unit), "rounds".into()];
        for r in &self.rows {
            for (h, _) in &r.extra {
                if !headings.contains(h) {
                    headings.push(h.clone());
                }
            }
        }
        let with_cpu = self.rows.iter().any(|r| r.per_op.is_some());
        let fixed = headings.len();
        for name in &self.compared {
            headings.push(format!("{name} is"));
            if with_cpu {
                headings.push(format!("{name} cpu/op is"));
            }
        }
        let mut lines: Vec<Vec<String>> = vec![headings.clone()];
        for r in &self.rows {
            let mut cells = vec![
                r.name.clone(),
                r.config.clone(),
                fmt_num(r.median),
                r.rounds.iter().map(|x| fmt_num(*x)).collect::<Vec<_>>().join(" "),
            ];
            for h in &headings[4..fixed] {
                cells.push(r.extra.iter().find(|(k, _)| k == h).map(|(_, v)| v.clone()).unwrap_or_default());
            }
            for name in &self.compared {
                let ours = self.rows.iter().find(|o| &o.name == name && o.config == r.config && !r.is_ours());
                let ratio = ours
                    .filter(|o| o.median > 0.0 && r.median > 0.0)
                    .map(|o| {
                        let x = if self.higher_is_better { o.median / r.median } else { r.median / o.median };
                        format!("{x:.2}x")
                    })
                    .unwrap_or_default();
                cells.push(ratio);
                if with_cpu {
                    let cpu = ours
                        .and_then(|o| Some((o.per_op.filter(|x| *x > 0.0)?, r.per_op.filter(|x| *x > 0.0)?)))
                        .map(|(mine, theirs)| format!("{:.2}x", theirs / mine))
                        .unwrap_or_default();
                    cells.push(cpu);
                }
            }
            lines.push(cells);
        }
        let widths: Vec<usize> =
            (0..headings.len()).map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0)).collect();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "scenario {} ({}, {} is better)",
            self.scenario,
            self.unit,
            if self.higher_is_better { "more" } else { "less" }
        );
        for l in &lines {
            let row: Vec<String> = l.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            let _ = writeln!(s, "  {}", row.join("  ").trim_end());
        }
        for k in &self.skipped {
            let _ = writeln!(s, "  skipped: {k}");
        }
        for n in &self.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        s
    }

    /// The one-line JSON object:
    /// `{"scenario", "unit", "results": {NAME: median}, "ratios": {"eventlet/NAME": x}}`, and
    /// `"cpu_ratios"` (the same keys, server CPU per operation) where measured.
    pub(crate) fn json(&self) -> serde_json::Value {
        let results: serde_json::Map<String, serde_json::Value> =
            self.rows.iter().map(|r| (r.key(), serde_json::json!(r.median))).collect();
        let round = |v: Vec<(String, f64)>| -> serde_json::Map<String, serde_json::Value> {
            v.into_iter().map(|(k, x)| (k, serde_json::json!((x * 1000.0).round() / 1000.0))).collect()
        };
        let mut j = serde_json::json!({
            "scenario": self.scenario,
            "unit": self.unit,
            "results": results,
            "ratios": round(self.ratios()),
        });
        let cpu = self.cpu_ratios();
        if !cpu.is_empty() {
            j["cpu_ratios"] = serde_json::Value::Object(round(cpu));
        }
        j
    }
}

/// The median (the mean of the middle two for an even count).
pub(crate) fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn fmt_num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn ratios_point_the_right_way() {
        let mut r = Report::new("spawn", "ns", false);
        r.rows.push(Row::new("eventlet", "", vec![100.0]));
        r.rows.push(Row::new("tokio", "", vec![300.0]));
        r.rows.push(Row::new("eventlet-park", "", vec![50.0]));
        assert_eq!(r.ratios(), vec![("eventlet/tokio".to_string(), 3.0)]);
        let mut t = Report::new("echo", "msgs/s", true);
        t.rows.push(Row::new("eventlet", "100 conns", vec![200.0]));
        t.rows.push(Row::new("tokio", "100 conns", vec![100.0]));
        t.rows.push(Row::new("tokio", "1000 conns", vec![100.0]));
        assert_eq!(t.ratios(), vec![("eventlet/tokio@100".to_string(), 2.0)]);
        let j = t.json();
        assert_eq!(j["results"]["tokio@1000"], 100.0);
        assert_eq!(j["ratios"]["eventlet/tokio@100"], 2.0);
        assert!(j.get("cpu_ratios").is_none());
        t.rows[0].per_op = Some(2.0);
        t.rows[1].per_op = Some(3.0);
        assert_eq!(t.cpu_ratios(), vec![("eventlet/tokio@100".to_string(), 1.5)]);
        assert_eq!(t.json()["cpu_ratios"]["eventlet/tokio@100"], 1.5);
        assert!(t.table().contains("eventlet cpu/op is"), "{}", t.table());
        // A variant compared in its own columns.
        t.compared.push("eventlet-raw".into());
        t.rows.push(Row::new("eventlet-raw", "100 conns", vec![300.0]).per_op(1.0));
        assert_eq!(t.json()["ratios"]["eventlet-raw/tokio@100"], 3.0);
        assert_eq!(t.json()["cpu_ratios"]["eventlet-raw/tokio@100"], 3.0);
        assert!(t.table().contains("eventlet-raw cpu/op is"), "{}", t.table());
    }
}
