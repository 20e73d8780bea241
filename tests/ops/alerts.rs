//! `deploy/prometheus/vigile-rules.yaml`: `promtool check rules` accepts it,
//! `promtool test rules` passes its unit tests, and every alert is tested
//! both firing and quiet; rules and dashboard name only metrics vigile
//! registers.

use serde::Deserialize;
use serde_yaml::Value;

use crate::tools::{is_vigile_metric, metric_names_in, read, registered_metrics, run_tool};

const RULES: &str = "deploy/prometheus/vigile-rules.yaml";
const TESTS: &str = "deploy/prometheus/vigile-rules.test.yaml";

fn yaml(path: &str) -> Value {
    Value::deserialize(serde_yaml::Deserializer::from_str(&read(path))).expect(path)
}

fn alerts() -> Vec<Value> {
    let rules = yaml(RULES);
    rules["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let version = run_tool("promtool", &["--version"]).ok("promtool --version");
    eprintln!("{}", version.output().lines().next().unwrap_or_default());
    let r = run_tool("promtool", &["check", "rules", RULES]).ok("promtool check rules");
    assert!(r.output().contains("SUCCESS"), "{}", r.output());
}

#[test]
fn the_alert_rules_pass_their_promtool_unit_tests() {
    let r = run_tool("promtool", &["test", "rules", TESTS]).ok("promtool test rules");
    assert!(r.output().contains("SUCCESS"), "{}", r.output());
}

#[test]
fn every_alert_is_tested_firing_and_quiet_with_severity_and_annotations() {
    let tests = yaml(TESTS);
    let checks: Vec<&Value> = tests["tests"]
        .as_sequence()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_sequence().into_iter().flatten())
        .collect();
    let alerts = alerts();
    assert!(alerts.len() >= 9, "{} alerts", alerts.len());
    for rule in &alerts {
        let name = rule["alert"].as_str().expect("alerting rules only");
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        for key in ["summary", "description"] {
            assert!(rule["annotations"][key].is_string(), "{name}: no {key}");
        }
        let of_it: Vec<&&Value> = checks
            .iter()
            .filter(|c| c["alertname"].as_str() == Some(name))
            .collect();
        let firing = |c: &&&Value| c["exp_alerts"].as_sequence().is_some_and(|a| !a.is_empty());
        assert!(of_it.iter().any(firing), "{name}: no test where it fires");
        assert!(
            !of_it.iter().all(firing),
            "{name}: no test where it stays quiet"
        );
    }
}

#[test]
fn rules_and_dashboard_name_only_metrics_vigile_registers() {
    let registered = registered_metrics();
    for (file, text) in [
        (RULES, read(RULES)),
        (
            "deploy/grafana/vigile.json",
            read("deploy/grafana/vigile.json"),
        ),
    ] {
        let names = metric_names_in(&text);
        assert!(!names.is_empty(), "{file}: no vigile metric");
        for name in names {
            assert!(
                is_vigile_metric(&name, &registered),
                "{file}: {name} is not registered in src/metrics.rs"
            );
        }
    }
}
