//! Sending mail (password-reset links): `file` writes one `.eml` per message
//! to `mailer.dir` (the default, so a newcomer sees the link), `smtp` sends
//! through a relay (STARTTLS, TLS or plain, credentials from the environment),
//! `log` only logs that a message went out (never its link).
//!
//! Sending blocks and may be slow: it runs on the reset worker's own thread,
//! never on a request's path.

use std::path::PathBuf;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Message, SmtpTransport, Transport as _};

use crate::config::{MailerConfig, MailerKind, SmtpTls};

/// Why the mailer could not be set up or a message not sent. The messages
/// name the configuration key at fault.
#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    #[error("mailer.smtp.host: {0}")]
    SmtpHost(lettre::transport::smtp::Error),
    #[error("mailer.smtp: missing")]
    SmtpMissing,
    #[error("bad recipient: {0}")]
    Recipient(lettre::address::AddressError),
    #[error("cannot encode the body")]
    Encoding,
    #[error(transparent)]
    Message(#[from] lettre::error::Error),
    #[error("cannot write to {}: {source}", dir.display())]
    Write {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Send(lettre::transport::smtp::Error),
}

/// One message to send.
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
}

enum Transport {
    File(PathBuf),
    Log,
    Smtp(Box<SmtpTransport>),
}

pub struct Mailer {
    from: Mailbox,
    transport: Transport,
}

impl Mailer {
    pub fn from_config(cfg: &MailerConfig) -> Result<Mailer, MailerError> {
        let from = cfg.from.clone();
        let transport = match (cfg.kind, &cfg.smtp) {
            (MailerKind::File, _) => Transport::File(cfg.dir.clone()),
            (MailerKind::Log, _) => Transport::Log,
            (MailerKind::Smtp, Some(smtp)) => {
                let builder = match smtp.tls {
                    SmtpTls::Starttls => SmtpTransport::starttls_relay(&smtp.host),
                    SmtpTls::Tls => SmtpTransport::relay(&smtp.host),
                    SmtpTls::None => Ok(SmtpTransport::builder_dangerous(&smtp.host)),
                }
                .map_err(MailerError::SmtpHost)?;
                let mut builder = builder.port(smtp.port()).timeout(Some(smtp.timeout));
                if let Some((user, pass)) = &smtp.credentials {
                    builder = builder.credentials(Credentials::new(user.clone(), pass.clone()));
                }
                Transport::Smtp(Box::new(builder.build()))
            }
            (MailerKind::Smtp, None) => return Err(MailerError::SmtpMissing),
        };
        Ok(Mailer { from, transport })
    }

    fn message(
        &self,
        mail: &Mail,
        encoding: ContentTransferEncoding,
    ) -> Result<Message, MailerError> {
        let to: Mailbox = mail.to.parse().map_err(MailerError::Recipient)?;
        let body = match encoding {
            // Our own text: UTF-8, short lines, no NUL: valid 8bit once in CRLF.
            ContentTransferEncoding::EightBit => {
                Body::dangerous_pre_encoded(mail.text.replace('\n', "\r\n").into_bytes(), encoding)
            }
            _ => Body::new_with_encoding(mail.text.clone(), encoding)
                .map_err(|_| MailerError::Encoding)?,
        };
        Ok(Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(body),
            )?)
    }

    /// Sends one message; blocks until done or failed.
    pub fn send(&self, mail: &Mail) -> Result<(), MailerError> {
        match &self.transport {
            Transport::File(dir) => {
                // 8bit keeps the link readable in the file as it is.
                let message = self.message(mail, ContentTransferEncoding::EightBit)?;
                let name = format!(
                    "{}-{:08x}.eml",
                    humantime::format_rfc3339_millis(std::time::SystemTime::now()),
                    rand::random::<u32>()
                )
                .replace(':', "-");
                crate::fsutil::write_private(&dir.join(name), &message.formatted()).map_err(
                    |source| MailerError::Write {
                        dir: dir.clone(),
                        source,
                    },
                )
            }
            Transport::Log => {
                tracing::info!(to = %mail.to, subject = %mail.subject, "mail (log mailer; content withheld)");
                Ok(())
            }
            Transport::Smtp(smtp) => {
                let message = self.message(mail, ContentTransferEncoding::QuotedPrintable)?;
                smtp.send(&message).map(|_| ()).map_err(MailerError::Send)
            }
        }
    }
}
