//! Durations as operators write them in YAML: `250ms`, `10s`, `5m`, `1h`, `1d`.
//!
//! A bare number is refused (is `300` seconds or milliseconds?), except `0`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A duration parsed from the YAML form. Converts into `std::time::Duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

const HINT: &str = "expected a duration such as 500ms, 10s, 5m, 1h or 1d";

/// Parses `"<integer><unit>"` with unit one of ms, s, m, h, d.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}`: missing unit; {HINT}"))?;
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().map_err(|_| format!("`{text}`: {HINT}"))?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("`{text}`: unknown unit `{unit}`; {HINT}")),
    };
    value
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}`: too large"))
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(HINT)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ConfigDuration, E> {
                parse_duration(v).map(ConfigDuration).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ConfigDuration, E> {
                if v == 0 {
                    Ok(ConfigDuration(Duration::ZERO))
                } else {
                    Err(E::custom(format!("`{v}`: missing unit; {HINT}")))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ConfigDuration, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("`{v}`: negative; {HINT}"))),
                }
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
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
    }

    #[test]
    fn refuses_what_is_ambiguous_or_wrong() {
        for bad in [
            "",
            "5",
            "5 minutes",
            "m",
            "-1s",
            "1.5h",
            "5w",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} should be refused");
        }
    }
}
