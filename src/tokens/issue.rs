//! Issuing access and refresh tokens, signed by the active key (its `kid`
//! in the header).

use super::{random_token_id, AccessClaims, RefreshClaims, SessionId, Subject, TokenKeys};

impl TokenKeys {
    pub fn issue_access(
        &self,
        subject: &Subject,
        session: SessionId,
        now: u64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let set = self.current();
        let claims = AccessClaims {
            iss: set.settings.issuer.clone(),
            aud: set.settings.audience.clone(),
            sub: subject.account_id.to_string(),
            email: subject.email.to_string(),
            role: subject.role.to_string(),
            sid: session.to_string(),
            jti: format!("{:032x}", random_token_id()),
            iat: now,
            exp: now + set.settings.access_ttl,
            token_type: "access".into(),
            nbf: None,
        };
        jsonwebtoken::encode(&set.signer.header, &claims, &set.signer.encoding)
    }

    /// A refresh token with the given `jti` and expiry (both kept in the session).
    pub fn issue_refresh(
        &self,
        account_id: u64,
        session: SessionId,
        jti: u128,
        now: u64,
        exp: u64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let set = self.current();
        let claims = RefreshClaims {
            iss: set.settings.issuer.clone(),
            aud: set.settings.audience.clone(),
            sub: account_id.to_string(),
            sid: session.to_string(),
            jti: format!("{jti:032x}"),
            iat: now,
            exp,
            token_type: "refresh".into(),
            nbf: None,
        };
        jsonwebtoken::encode(&set.signer.header, &claims, &set.signer.encoding)
    }
}
