//! `deploy/Dockerfile`: hadolint finds nothing, and what it copies, exposes
//! and probes agrees with the repository and the image's configuration. (No
//! image is built here: these machines have no container runtime.)

use std::time::Duration;

use crate::tools::{read, root, run, run_tool};

#[test]
fn the_dockerfile_passes_hadolint() {
    let version = run_tool("hadolint", &["--version"]).ok("hadolint --version");
    eprintln!("{}", version.stdout.trim());
    run_tool("hadolint", &["deploy/Dockerfile"]).ok("hadolint deploy/Dockerfile");
}

#[test]
fn hadolint_refuses_a_careless_dockerfile() {
    // The linter really lints: an unpinned base image and an apt-get
    // install without --no-install-recommends are findings.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("Dockerfile");
    std::fs::write(&path, "FROM debian:latest\nRUN apt-get install -y curl\n").expect("write");
    let r = run_tool("hadolint", &[path.to_str().expect("path")]);
    assert!(!r.status.success(), "{}", r.output());
    assert!(r.output().contains("DL3007"), "{}", r.output());
}

#[test]
fn the_image_runs_the_gateway_as_configured() {
    let dockerfile = read("deploy/Dockerfile");
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    let has = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
    // Two stages, the runtime one unprivileged, with its data as a volume.
    assert_eq!(lines.iter().filter(|l| l.starts_with("FROM ")).count(), 2);
    assert!(has("USER 10001:10001"));
    assert!(has("VOLUME [\"/var/lib/vigile\"]"));
    assert!(has("STOPSIGNAL SIGTERM"));
    assert!(has("CMD [\"serve\"]"));
    assert!(has("ENV VIGILE_CONFIG=/etc/vigile/vigile.yaml"));
    // Every file the build copies from the context exists.
    for line in lines
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            assert!(root().join(source).exists(), "{line}: {source} is missing");
        }
    }
    // The configuration it ships is valid, and its admin listener is the
    // one HEALTHCHECK and EXPOSE name, reachable from outside the container.
    let config = read("deploy/container/vigile.yaml");
    assert!(config.contains("listen: \"0.0.0.0:9090\""), "{config}");
    assert!(
        config.contains("path: /var/lib/vigile/vigile.redb"),
        "{config}"
    );
    assert!(dockerfile.contains("\"http://127.0.0.1:9090/healthz\""));
    assert!(has("EXPOSE 8080 9090"));
    let check = run(
        std::process::Command::new(env!("CARGO_BIN_EXE_vigile"))
            .args(["check-config", "--config"])
            .arg(root().join("deploy/container/vigile.yaml")),
        Duration::from_secs(30),
    )
    .ok("vigile check-config deploy/container/vigile.yaml");
    assert!(check.stdout.contains("OK"), "{}", check.output());
}
