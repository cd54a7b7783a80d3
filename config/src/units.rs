//! The value types of both daemons' config files: [`HumanDuration`] (the worker's durations),
//! [`GoDuration`] (the manager's), [`ByteSize`], [`SectorSize`] and [`FilAmount`]. Each parses
//! from and serialises to a TOML string.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use vc_processors::layout;

/// A duration in humantime syntax: `"30s"`, `"1min"`, `"1m30s"`, `"2h 5m"`, `"500ms"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        HumanDuration(Duration::from_secs(secs))
    }

    /// The duration.
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Duration {
        d.0
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|e| {
                format!("invalid duration {s:?} (expected e.g. \"30s\", \"1min\", \"1m30s\"): {e}")
            })
    }
}

impl fmt::Display for HumanDuration {
    /// humantime's form: `30s`, `1m 30s`, `3m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A Go duration (`"1m0s"`, `"15s"`, `"25h0m0s"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct GoDuration(pub Duration);

impl FromStr for GoDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t == "0" {
            return Ok(GoDuration(Duration::ZERO));
        }
        // Go writes "1h0m0s" and accepts fractions and "ms"/"us"/"ns"; humantime reads the
        // integer forms, which are what damocles writes.
        humantime::parse_duration(t).map(GoDuration).map_err(|e| {
            format!("invalid duration {s:?} (expected Go syntax such as \"1m0s\"): {e}")
        })
    }
}

impl fmt::Display for GoDuration {
    /// Formats as Go does: `1h0m0s`, `1m0s`, `15s`, `1.5s`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let secs = d.as_secs();
        let nanos = d.subsec_nanos();
        if secs == 0 && nanos == 0 {
            return f.write_str("0s");
        }
        if secs == 0 {
            return write!(f, "{}ms", d.as_millis());
        }
        let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
        let frac = if nanos == 0 {
            String::new()
        } else {
            format!(".{nanos:09}").trim_end_matches('0').to_string()
        };
        if h > 0 {
            write!(f, "{h}h{m}m{s}{frac}s")
        } else if m > 0 {
            write!(f, "{m}m{s}{frac}s")
        } else {
            write!(f, "{s}{frac}s")
        }
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A byte amount in `byte_unit` syntax: `"8GiB"`, `"512 MiB"`, `"1.5KiB"`, `"32GB"` (decimal),
/// `"1024"`. Units are case-insensitive; `Ki`/`KiB`… are binary, `K`/`KB`… decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_bytes(s).map(ByteSize)
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the amount exactly (`32GiB`), else bytes (`1000B`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_bytes(self.0))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A sector size: a [`ByteSize`] that is one of [`layout::SECTOR_SIZES`] (`"32GiB"`, `"2KiB"`,
/// `"2048"`; `"32GB"` is decimal and refused, as in damocles). Displayed in the largest binary
/// unit (`32GiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SectorSize(pub u64);

impl FromStr for SectorSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let n = parse_bytes(s)?;
        if layout::sector_size_index(n).is_some() {
            Ok(SectorSize(n))
        } else {
            Err(format!(
                "invalid sector size {s:?} ({n} bytes); use 2KiB, 8MiB, 512MiB, 32GiB or 64GiB \
                 (binary units: GB is decimal)"
            ))
        }
    }
}

impl fmt::Display for SectorSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_bytes(self.0))
    }
}

impl Serialize for SectorSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SectorSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = (t[..split].trim(), t[split..].trim());
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "ki" | "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mi" | "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gi" | "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "ti" | "tib" => 1 << 40,
        "p" | "pb" => 1_000_000_000_000_000,
        "pi" | "pib" => 1 << 50,
        _ => return Err(format!("invalid byte size {s:?}: unknown unit {unit:?}")),
    };
    let invalid = || format!("invalid byte size {s:?} (expected e.g. \"8GiB\", \"512MiB\")");
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return Err(invalid());
    }
    let whole: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| invalid())?
    };
    let mut total = whole.checked_mul(mult).ok_or_else(invalid)?;
    if !frac.is_empty() {
        // Fractions are truncated to whole bytes.
        let digits = &frac[..frac.len().min(18)];
        let numerator: u128 = digits.parse().map_err(|_| invalid())?;
        let denominator = 10u128.pow(digits.len() as u32);
        let extra =
            u64::try_from(numerator * u128::from(mult) / denominator).map_err(|_| invalid())?;
        total = total.checked_add(extra).ok_or_else(invalid)?;
    }
    Ok(total)
}

fn format_bytes(n: u64) -> String {
    let units: [(&str, u32); 5] = [
        ("PiB", 50),
        ("TiB", 40),
        ("GiB", 30),
        ("MiB", 20),
        ("KiB", 10),
    ];
    for (unit, shift) in units {
        let size: u64 = 1 << shift;
        if n >= size && n.is_multiple_of(size) {
            return format!("{}{unit}", n >> shift);
        }
    }
    format!("{n}B")
}

/// A FIL amount (`"5 nanoFIL"`, `"0.1 FIL"`, `"100 attoFIL"`); the empty string is unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FilAmount(pub Option<u128>);

impl FromStr for FilAmount {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.is_empty() {
            return Ok(FilAmount(None));
        }
        let (num, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
            Some(i) => (t[..i].trim(), t[i..].trim()),
            None => (t, ""),
        };
        let scale: u32 = match unit.to_ascii_lowercase().as_str() {
            "" | "fil" => 18,
            "nanofil" | "nfil" => 9,
            "attofil" | "afil" => 0,
            other => return Err(format!("invalid FIL unit {other:?} in {s:?}")),
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if int.is_empty() && frac.is_empty() || frac.len() > scale as usize {
            return Err(format!("invalid FIL amount {s:?}"));
        }
        let digits = format!("{int}{frac:0<width$}", width = scale as usize);
        digits
            .parse::<u128>()
            .map(|v| FilAmount(Some(v)))
            .map_err(|_| format!("invalid FIL amount {s:?}"))
    }
}

impl fmt::Display for FilAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => Ok(()),
            Some(v) if v % 1_000_000_000 == 0 && v < 1_000_000_000_000_000_000 => {
                write!(f, "{} nanoFIL", v / 1_000_000_000)
            }
            Some(v) if v % 1_000_000_000_000_000_000 == 0 => {
                write!(f, "{} FIL", v / 1_000_000_000_000_000_000)
            }
            Some(v) => write!(f, "{v} attoFIL"),
        }
    }
}

impl Serialize for FilAmount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for FilAmount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        for (text, secs) in [
            ("30s", 30),
            ("1m", 60),
            ("1min", 60),
            ("1m30s", 90),
            ("2h 5m", 7500),
        ] {
            let d: HumanDuration = text.parse().expect(text);
            assert_eq!(d.get(), Duration::from_secs(secs), "{text}");
        }
        assert_eq!(HumanDuration::from_secs(90).to_string(), "1m 30s");
        assert_eq!(
            "500ms".parse::<HumanDuration>().expect("ms").get(),
            Duration::from_millis(500)
        );
        assert!("soon".parse::<HumanDuration>().is_err());
    }

    #[test]
    fn byte_and_sector_sizes() {
        assert_eq!(
            "32GiB".parse::<SectorSize>().expect("32GiB").0,
            34_359_738_368
        );
        assert_eq!("2KiB".parse::<SectorSize>().expect("2KiB").0, 2048);
        let e = "32GB".parse::<SectorSize>().expect_err("decimal");
        assert!(e.contains("32GB"), "{e}");
        assert_eq!(
            "32GB".parse::<ByteSize>().expect("decimal").0,
            32_000_000_000
        );
        assert_eq!("1.5KiB".parse::<ByteSize>().expect("fraction").0, 1536);
        assert_eq!("8 gib".parse::<ByteSize>().expect("spaced").0, 8 << 30);
        assert_eq!("1024".parse::<ByteSize>().expect("bytes").0, 1024);
        assert!("-1KiB".parse::<ByteSize>().is_err());
        assert!("1XB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(8 << 30).to_string(), "8GiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
    }

    #[test]
    fn go_durations_round_trip() {
        for (text, secs) in [
            ("1m0s", 60),
            ("15s", 15),
            ("25h0m0s", 90000),
            ("1h0m0s", 3600),
            ("0s", 0),
        ] {
            let d: GoDuration = text.parse().expect(text);
            assert_eq!(d.0, Duration::from_secs(secs), "{text}");
            assert_eq!(d.to_string(), text);
        }
        assert!("soon".parse::<GoDuration>().is_err());
    }

    #[test]
    fn fil_amounts() {
        assert_eq!(
            "5 nanoFIL".parse::<FilAmount>().expect("nano").0,
            Some(5_000_000_000)
        );
        assert_eq!(
            "0.1 FIL".parse::<FilAmount>().expect("fil").0,
            Some(100_000_000_000_000_000)
        );
        assert_eq!("7 afil".parse::<FilAmount>().expect("atto").0, Some(7));
        assert_eq!("".parse::<FilAmount>().expect("unset").0, None);
        assert!("3 dollars".parse::<FilAmount>().is_err());
        assert_eq!(FilAmount(Some(5_000_000_000)).to_string(), "5 nanoFIL");
    }
}
