//! Durations as operators write them in YAML: `250ms`, `10s`, `5m`, `1h`, `1d`,
//! parsed by `humantime` (which also takes `1h30m`, `2w`, `1.5h`, `10sec`...).
//!
//! A bare number is refused (is `300` seconds or milliseconds?), except `0`,
//! and so is a space inside the value (`5 minutes`): one word per duration.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

const HINT: &str = "expected a duration such as 500ms, 10s, 5m, 1h or 1d";

/// Parses a duration such as `500ms`, `10s`, `5m`, `6h` or `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{text}`: missing unit; {HINT}"));
    }
    if text.contains(char::is_whitespace) {
        return Err(format!("`{text}`: no space inside a duration; {HINT}"));
    }
    let parsed = humantime::parse_duration(text);
    // humantime counts below the second in nanoseconds: past 584 years of
    // milliseconds it overflows, where a plain count of them did not.
    if let (Err(humantime::DurationError::NumberOverflow), Some(millis)) = (
        &parsed,
        text.strip_suffix("ms").and_then(|n| n.parse::<u64>().ok()),
    ) {
        return Ok(Duration::from_millis(millis));
    }
    parsed.map_err(|e| match e {
        humantime::DurationError::UnknownUnit { unit, .. } if unit.is_empty() => {
            format!("`{text}`: missing unit; {HINT}")
        }
        humantime::DurationError::UnknownUnit { unit, .. } => {
            format!("`{text}`: unknown unit `{unit}`; {HINT}")
        }
        humantime::DurationError::NumberOverflow => format!("`{text}`: too large"),
        _ => format!("`{text}`: {HINT}"),
    })
}

/// `#[serde(deserialize_with = "duration::deserialize")]` for a `Duration`
/// field: a string as above, or the integer `0`.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    struct DurationVisitor;
    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(HINT)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            if v == 0 {
                Ok(Duration::ZERO)
            } else {
                Err(E::custom(format!("`{v}`: missing unit; {HINT}")))
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::custom(format!("`{v}`: negative; {HINT}"))),
            }
        }
    }
    deserializer.deserialize_any(DurationVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 10m "), Ok(Duration::from_secs(600)));
        assert_eq!(
            parse_duration("18446744073709551615ms"),
            Ok(Duration::from_millis(u64::MAX))
        );
    }

    #[test]
    fn humantime_forms_are_accepted_too() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(
            parse_duration("5w"),
            Ok(Duration::from_secs(5 * 7 * 86_400))
        );
        assert_eq!(parse_duration("10sec"), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn refuses_what_is_ambiguous_or_wrong() {
        for bad in [
            "",
            "5",
            "00",
            "5 minutes",
            "1h 30m",
            "m",
            "-1s",
            "5x",
            "1.5",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} should be refused");
        }
        assert_eq!(
            parse_duration("10x"),
            Err(format!("`10x`: unknown unit `x`; {HINT}"))
        );
        assert_eq!(
            parse_duration("5"),
            Err(format!("`5`: missing unit; {HINT}"))
        );
    }
}
