//! `vigile reload [--config FILE]`: asks the gateway running with FILE's
//! admin listener to reload FILE, and prints the outcome. The exit code is
//! 0 when the new configuration is in force, 1 when the gateway refused it
//! (its message, as `check-config` would print it, or the key that needs a
//! restart) or cannot be reached, 2 when FILE is invalid and no gateway
//! could be asked.
//!
//! An invalid FILE is still sent when its admin listener and data
//! directory can be read from it (the gateway refuses it too, and logs and
//! counts the refusal); if they cannot, the file's own error is printed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::RELOAD_PATH;
use crate::config::{AdminConfig, Config, StoreConfig};

/// Where a running gateway with this file listens and keeps its token.
struct Channel {
    addr: SocketAddr,
    data_dir: PathBuf,
}

impl Channel {
    fn of(config: &Config) -> Channel {
        Channel {
            addr: config.admin.listen,
            data_dir: config.store.data_dir(),
        }
    }

    /// From the YAML of a file that does not load: the two keys as written,
    /// their defaults where they are not.
    fn lenient(path: &Path) -> Channel {
        let yaml: serde_yaml::Value = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| serde_yaml::from_str(&text).ok())
            .unwrap_or(serde_yaml::Value::Null);
        let addr = yaml["admin"]["listen"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or(AdminConfig::default().listen);
        let mut store = StoreConfig::default();
        if let Some(p) = yaml["store"]["path"].as_str() {
            store.path = PathBuf::from(p);
        }
        Channel {
            addr,
            data_dir: store.data_dir(),
        }
    }
}

/// Runs `vigile reload`; the exit code.
pub fn reload_command(path: &Path) -> i32 {
    let (channel, invalid) = match Config::load(path) {
        Ok(config) => (Channel::of(&config), None),
        Err(e) => (Channel::lenient(path), Some(e)),
    };
    let local_failure = |why: String| match &invalid {
        Some(e) => {
            eprintln!("vigile: invalid configuration {}: {e}", path.display());
            2
        }
        None => {
            eprintln!("vigile: {why}");
            1
        }
    };
    let token_path = channel.data_dir.join(crate::state::ADMIN_TOKEN_FILE);
    let token = match std::fs::read_to_string(&token_path) {
        Ok(token) => token,
        Err(e) => {
            return local_failure(format!(
                "no running gateway to reload: cannot read its operator token {}: {e}",
                token_path.display()
            ))
        }
    };
    let mut addr = channel.addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let file = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let sent = agent
        .post(format!("http://{addr}{RELOAD_PATH}"))
        .header("Authorization", format!("Bearer {}", token.trim()))
        .send_json(json!({ "config": file }));
    let mut response = match sent {
        Ok(response) => response,
        Err(e) => {
            return local_failure(format!(
                "no running gateway answered on {addr} (admin.listen): {e}"
            ))
        }
    };
    let status = response.status().as_u16();
    let body: serde_json::Value = response.body_mut().read_json().unwrap_or_default();
    if status == 200 {
        println!(
            "{}: reloaded (sha256 {})",
            file.display(),
            body["sha256"].as_str().unwrap_or("?")
        );
        return 0;
    }
    eprintln!(
        "vigile: {} ({})",
        body["error"]
            .as_str()
            .unwrap_or("the gateway refused the reload"),
        body["code"].as_str().unwrap_or("error")
    );
    1
}
