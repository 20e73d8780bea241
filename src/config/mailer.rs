//! `mailer:`, how password-reset mails leave: files, the log, or SMTP.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;
use serde::{Deserialize, Deserializer};

use super::{duration, err, values, ConfigError, Env};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MailerKind {
    #[default]
    File,
    Smtp,
    Log,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (port 587), required.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: for a relay on the same host only.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailerConfig {
    pub kind: MailerKind,
    pub dir: PathBuf,
    pub reset_url: String,
    #[serde(deserialize_with = "mailbox")]
    pub from: Mailbox,
    /// Present when `kind: smtp`.
    pub smtp: Option<SmtpConfig>,
}

impl Default for MailerConfig {
    fn default() -> Self {
        MailerConfig {
            kind: MailerKind::File,
            dir: PathBuf::from("data/outbox"),
            reset_url: "http://localhost:3000/reset-password?token={token}".into(),
            from: "vigile <no-reply@localhost>"
                .parse()
                .expect("a valid mailbox"),
            smtp: None,
        }
    }
}

fn mailbox<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Mailbox, D::Error> {
    values::from_str(deserializer, |text| {
        text.parse().map_err(|_| {
            format!("`{text}` is not an address such as vigile <no-reply@example.com>")
        })
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Absent: the port of `tls` (see `port()`).
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    #[serde(default)]
    pub username_env: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    /// What `username_env` and `password_env` hold, read at load.
    #[serde(skip)]
    pub credentials: Option<(String, String)>,
    #[serde(default = "ten_seconds", deserialize_with = "duration::deserialize")]
    pub timeout: Duration,
}

fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}

impl SmtpConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        })
    }

    fn check(&mut self, env: Env) -> Result<(), ConfigError> {
        if self.host.trim().is_empty() {
            return err("mailer.smtp.host", "must not be empty");
        }
        let read = |key: &str, name: &Option<String>| -> Result<Option<String>, ConfigError> {
            match name {
                None => Ok(None),
                Some(var) => match env(var) {
                    Some(value) if !value.is_empty() => Ok(Some(value)),
                    _ => err(
                        &format!("mailer.smtp.{key}"),
                        format!("the variable {var} is not set"),
                    ),
                },
            }
        };
        self.credentials = match (
            read("username_env", &self.username_env)?,
            read("password_env", &self.password_env)?,
        ) {
            (Some(user), Some(pass)) => Some((user, pass)),
            (None, None) => None,
            _ => return err("mailer.smtp", "username_env and password_env go together"),
        };
        if self.timeout.is_zero() {
            return err("mailer.smtp.timeout", "must be longer than 0");
        }
        Ok(())
    }
}

impl MailerConfig {
    pub(super) fn check(&mut self, env: Env) -> Result<(), ConfigError> {
        if !self.reset_url.contains("{token}") {
            return err("mailer.reset_url", "must contain {token}");
        }
        match (self.kind, &mut self.smtp) {
            (MailerKind::Smtp, None) => {
                err("mailer.smtp", "is needed with kind: smtp (host, port, tls)")
            }
            (MailerKind::Smtp, Some(smtp)) => smtp.check(env),
            (_, Some(_)) => err("mailer.smtp", "is only read with kind: smtp"),
            (_, None) => Ok(()),
        }
    }
}
