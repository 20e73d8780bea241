//! `deploy/kubernetes/`: each overlay renders with `kubectl kustomize`, every
//! object passes kubernetes-validate (`--strict`, the Kubernetes OpenAPI
//! schemas), and the objects hold what the gateway needs: probes on the
//! admin port, a locked-down security context, a Secret with what the
//! configuration reads, a valid vigile configuration, a ServiceMonitor that
//! finds the Service.

use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Value;

use crate::tools::{root, run, run_tool};

/// The rendered objects of one overlay, and the file they were written to.
struct Rendered {
    objects: Vec<Value>,
    file: tempfile::NamedTempFile,
}

fn render(overlay: &str) -> Rendered {
    let path = format!("deploy/kubernetes/overlays/{overlay}");
    let r = run_tool("kubectl", &["kustomize", &path]).ok(&format!("kubectl kustomize {path}"));
    assert!(
        r.stderr.trim().is_empty(),
        "kubectl kustomize {path} warned: {}",
        r.stderr
    );
    let objects: Vec<Value> = serde_yaml::Deserializer::from_str(&r.stdout)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML"))
        .collect();
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(file.path(), &r.stdout).expect("write");
    Rendered { objects, file }
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn validate(overlay: &str, rendered: &Rendered) {
    let file = rendered.file.path().to_str().expect("path");
    let r = run_tool("kubernetes-validate", &["--strict", file])
        .ok(&format!("kubernetes-validate --strict ({overlay})"));
    let output = r.output();
    for object in &rendered.objects {
        let kind = text(&object["kind"]);
        let name = text(&object["metadata"]["name"]);
        if kind == "ServiceMonitor" {
            // A Prometheus Operator CRD: no Kubernetes schema knows it; it
            // is checked against the Service below.
            continue;
        }
        let line = format!("passed for resource {}/{name}", kind.to_ascii_lowercase());
        assert!(
            output.contains(&line),
            "{overlay}: {kind}/{name} not validated:\n{output}"
        );
    }
}

/// What both overlays must hold; returns the gateway's configuration text.
fn check_common(overlay: &str, objects: &[Value]) -> String {
    let kinds: Vec<&str> = objects.iter().map(|o| text(&o["kind"])).collect();
    for kind in [
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "PodDisruptionBudget",
        "ServiceMonitor",
    ] {
        assert!(kinds.contains(&kind), "{overlay}: no {kind} in {kinds:?}");
    }
    let deployment = of_kind(objects, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        text(&container["readinessProbe"]["httpGet"]["path"]),
        "/readyz"
    );
    assert_eq!(
        text(&container["livenessProbe"]["httpGet"]["path"]),
        "/healthz"
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            text(&container[probe]["httpGet"]["port"]),
            "admin",
            "{probe}"
        );
    }
    let admin_port = container["ports"]
        .as_sequence()
        .and_then(|ports| ports.iter().find(|p| text(&p["name"]) == "admin"))
        .and_then(|p| p["containerPort"].as_u64())
        .expect("a container port named admin");
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    for bound in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                !text(&container["resources"][bound][resource]).is_empty(),
                "{overlay}: resources.{bound}.{resource}"
            );
        }
    }
    // The configuration the pod mounts, and the Secret it reads.
    let config_map = of_kind(objects, "ConfigMap");
    let mounted = pod["volumes"]
        .as_sequence()
        .and_then(|v| v.iter().find(|v| text(&v["name"]) == "config"))
        .map(|v| text(&v["configMap"]["name"]))
        .expect("the config volume");
    assert_eq!(mounted, text(&config_map["metadata"]["name"]));
    let secret = of_kind(objects, "Secret");
    let secret_ref = text(&container["envFrom"][0]["secretRef"]["name"]);
    assert_eq!(secret_ref, text(&secret["metadata"]["name"]));
    assert!(secret["stringData"]["VIGILE_JWT_SECRET"].is_string());
    let config = text(&config_map["data"]["vigile.yaml"]).to_string();
    assert!(
        config.contains(&format!("listen: \"0.0.0.0:{admin_port}\"")),
        "{overlay}: admin.listen must be 0.0.0.0:{admin_port} for the probes:\n{config}"
    );
    // The ServiceMonitor finds the Service and its admin port.
    let service = of_kind(objects, "Service");
    let monitor = of_kind(objects, "ServiceMonitor");
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("matchLabels");
    for (key, value) in selector {
        assert_eq!(&service["metadata"]["labels"][key], value, "{key:?}");
    }
    let port = text(&monitor["spec"]["endpoints"][0]["port"]);
    assert!(
        service["spec"]["ports"]
            .as_sequence()
            .is_some_and(|ports| ports.iter().any(|p| text(&p["name"]) == port)),
        "the Service has no port {port}"
    );
    assert_eq!(text(&monitor["spec"]["endpoints"][0]["path"]), "/metrics");
    config
}

/// `vigile check-config` on the ConfigMap's file (the Service names of its
/// targets, which only resolve in the cluster, made loopback addresses).
fn check_config(overlay: &str, config: &str, env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vigile.yaml");
    std::fs::write(
        &path,
        config.replace("\"stocks:8080\"", "\"127.0.0.1:8080\""),
    )
    .expect("write");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_vigile"));
    command
        .args(["check-config", "--config"])
        .arg(&path)
        .current_dir(root());
    for (name, value) in env {
        command.env(name, value);
    }
    let r = run(&mut command, Duration::from_secs(30));
    assert!(
        r.status.success(),
        "{overlay}: check-config: {}",
        r.output()
    );
    // The Secret left empty, as shipped: vigile refuses to start, naming it.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_vigile"));
    command.args(["check-config", "--config"]).arg(&path);
    for (name, _) in env {
        command.env(name, "");
    }
    let r = run(&mut command, Duration::from_secs(30));
    assert!(
        !r.status.success(),
        "{overlay}: an empty secret was accepted"
    );
    assert!(
        env.iter().any(|(name, _)| r.output().contains(name)),
        "{overlay}: the refusal names no variable: {}",
        r.output()
    );
}

const JWT: &str = "an-hs256-secret-of-more-than-32-bytes-0123456789";

#[test]
fn the_single_redb_overlay_renders_validates_and_holds_one_replica_on_a_volume() {
    let version = run_tool("kubectl", &["version", "--client"]).ok("kubectl version");
    eprintln!("{}", version.stdout.trim());
    let rendered = render("single-redb");
    validate("single-redb", &rendered);
    let objects = &rendered.objects;
    let config = check_common("single-redb", objects);
    let deployment = of_kind(objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(1));
    assert_eq!(text(&deployment["spec"]["strategy"]["type"]), "Recreate");
    let claim = of_kind(objects, "PersistentVolumeClaim");
    let data = deployment["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .and_then(|v| v.iter().find(|v| text(&v["name"]) == "data"))
        .expect("the data volume");
    assert_eq!(
        text(&data["persistentVolumeClaim"]["claimName"]),
        text(&claim["metadata"]["name"])
    );
    assert!(data.get("emptyDir").is_none(), "{data:?}");
    assert!(config.contains("kind: redb"), "{config}");
    assert!(
        config.contains("path: /var/lib/vigile/vigile.redb"),
        "{config}"
    );
    check_config("single-redb", &config, &[("VIGILE_JWT_SECRET", JWT)]);
}

#[test]
fn the_replicas_postgres_overlay_renders_validates_and_holds_replicas_on_postgres() {
    let rendered = render("replicas-postgres");
    validate("replicas-postgres", &rendered);
    let objects = &rendered.objects;
    let config = check_common("replicas-postgres", objects);
    let deployment = of_kind(objects, "Deployment");
    assert!(deployment["spec"]["replicas"].as_u64() >= Some(2));
    assert_eq!(
        deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"].as_u64(),
        Some(0)
    );
    assert!(
        !objects
            .iter()
            .any(|o| text(&o["kind"]) == "PersistentVolumeClaim"),
        "no volume claim: the data is in PostgreSQL"
    );
    assert!(of_kind(objects, "Secret")["stringData"]["VIGILE_DATABASE_URL"].is_string());
    assert!(config.contains("kind: postgres"), "{config}");
    assert!(config.contains("url_env: VIGILE_DATABASE_URL"), "{config}");
    check_config(
        "replicas-postgres",
        &config,
        &[
            ("VIGILE_JWT_SECRET", JWT),
            (
                "VIGILE_DATABASE_URL",
                "postgres://vigile:pw@db.example.com:5432/vigile?sslmode=require",
            ),
        ],
    );
}
