//! The `datetime` family in defaults: `datetime`/`date`/`time` as ISO strings, `timedelta` as
//! pydantic's ISO-8601 durations, `timezone(...)` offsets; all as pydantic writes them.

use serde_json::Value;

use super::python_value::{as_number, Py};

fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

/// `datetime(...)`, `date(...)`, `time(...)` → pydantic's ISO strings.
pub(super) fn date_or_time(
    func: &str,
    args: Vec<Py>,
    kwargs: Vec<(String, Py)>,
) -> Result<Py, String> {
    let call = TemporalCall::bind(func, args, kwargs)?;
    let tz = call.tz_suffix()?;
    let text = match func {
        "datetime.date" => call.iso_date()?,
        "datetime.datetime" => format!("{}T{}{tz}", call.iso_date()?, call.iso_time()?),
        _ => format!("{}{tz}", call.iso_time()?),
    };
    Ok(Py::Json(Value::String(text)))
}

/// The arguments of a `datetime`, `date` or `time` call, by parameter name.
struct TemporalCall<'f> {
    func: &'f str,
    names: &'static [&'static str],
    values: Vec<Option<Py>>,
}

impl<'f> TemporalCall<'f> {
    fn bind(func: &'f str, args: Vec<Py>, kwargs: Vec<(String, Py)>) -> Result<Self, String> {
        let names: &'static [&'static str] = match func {
            "datetime.datetime" => &[
                "year",
                "month",
                "day",
                "hour",
                "minute",
                "second",
                "microsecond",
                "tzinfo",
            ],
            "datetime.date" => &["year", "month", "day"],
            _ => &["hour", "minute", "second", "microsecond", "tzinfo"],
        };
        let mut values: Vec<Option<Py>> = vec![None; names.len()];
        if args.len() > names.len() {
            return Err(format!("passes too many arguments to {func}()"));
        }
        for (i, arg) in args.into_iter().enumerate() {
            values[i] = Some(arg);
        }
        for (name, value) in kwargs {
            let i = names
                .iter()
                .position(|n| *n == name)
                .ok_or_else(|| format!("passes unknown argument {name}= to {func}()"))?;
            values[i] = Some(value);
        }
        Ok(Self {
            func,
            names,
            values,
        })
    }

    /// An integer argument, or `default` when it is not given.
    fn int(&self, name: &str, default: Option<i64>) -> Result<i64, String> {
        let i = self.names.iter().position(|n| *n == name).unwrap_or(0);
        match (&self.values[i], default) {
            (Some(Py::Int(v)), _) => Ok(*v),
            (None, Some(d)) => Ok(d),
            _ => Err(format!("needs an integer {name} for {}()", self.func)),
        }
    }

    /// What `tzinfo` appends to the ISO text: nothing, `Z` or `+05:30`.
    fn tz_suffix(&self) -> Result<String, String> {
        let tzinfo = self
            .names
            .iter()
            .position(|n| *n == "tzinfo")
            .and_then(|i| self.values[i].clone());
        match tzinfo {
            None | Some(Py::None) => Ok(String::new()),
            Some(Py::TimeZone(suffix)) => Ok(suffix),
            Some(_) => Err(format!(
                "passes a tzinfo this reader cannot evaluate to {}()",
                self.func
            )),
        }
    }

    /// `YYYY-MM-DD`, the day checked against the month (leap years included).
    fn iso_date(&self) -> Result<String, String> {
        let year = in_range(self.int("year", None)?, 1, 9999, "year")?;
        let month = in_range(self.int("month", None)?, 1, 12, "month")?;
        let day = self.int("day", None)?;
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let days_in_month = [
            31,
            if leap { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        in_range(day, 1, days_in_month[(month - 1) as usize], "day")?;
        Ok(format!("{year:04}-{month:02}-{day:02}"))
    }

    /// `HH:MM:SS[.ffffff]`.
    fn iso_time(&self) -> Result<String, String> {
        let h = in_range(self.int("hour", Some(0))?, 0, 23, "hour")?;
        let m = in_range(self.int("minute", Some(0))?, 0, 59, "minute")?;
        let s = in_range(self.int("second", Some(0))?, 0, 59, "second")?;
        let us = in_range(self.int("microsecond", Some(0))?, 0, 999_999, "microsecond")?;
        let frac = if us > 0 {
            format!(".{us:06}")
        } else {
            String::new()
        };
        Ok(format!("{h:02}:{m:02}:{s:02}{frac}"))
    }
}

fn in_range(v: i64, lo: i64, hi: i64, what: &str) -> Result<i64, String> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(format!("has {what} {v} out of range"))
    }
}

/// `timedelta(...)` → pydantic's ISO-8601 duration; integer arguments are exact, floats
/// round half to even at the microsecond like Python.
pub(super) fn timedelta(args: Vec<Py>, kwargs: Vec<(String, Py)>) -> Result<Py, String> {
    let names = [
        "days",
        "seconds",
        "microseconds",
        "milliseconds",
        "minutes",
        "hours",
        "weeks",
    ];
    let scale = [86_400e6, 1e6, 1.0, 1e3, 60e6, 3_600e6, 604_800e6];
    if args.len() > names.len() {
        return Err("passes too many arguments to timedelta()".into());
    }
    let mut total = 0f64;
    let mut exact: i128 = 0;
    let mut all_int = true;
    let mut add = |value: &Py, factor: f64| -> Result<(), String> {
        match as_number(value) {
            Some(Ok(i)) => {
                exact += i as i128 * factor as i128;
                total += i as f64 * factor;
            }
            Some(Err(f)) => {
                all_int = false;
                total += f * factor;
            }
            None => return Err("passes a non-number to timedelta()".into()),
        }
        Ok(())
    };
    for (i, value) in args.iter().enumerate() {
        add(value, scale[i])?;
    }
    for (name, value) in &kwargs {
        let i = names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| format!("passes unknown argument {name}= to timedelta()"))?;
        add(value, scale[i])?;
    }
    if total.is_nan() {
        return Err("passes NaN to timedelta()".into());
    }
    let micros = if all_int {
        exact
    } else {
        round_half_even(total) as i128
    };
    if !TIMEDELTA_MICROS.contains(&micros) {
        return Err("is outside the range of timedelta()".into());
    }
    Ok(Py::Json(Value::String(iso_duration(micros))))
}

/// `timedelta.min..=timedelta.max` in microseconds; Python raises OverflowError outside it.
const TIMEDELTA_MICROS: std::ops::RangeInclusive<i128> =
    -999_999_999 * 86_400_000_000..=1_000_000_000 * 86_400_000_000 - 1;

/// `timezone(timedelta(...))` → the offset suffix it gives ISO timestamps.
pub(super) fn timezone(args: Vec<Py>, kwargs: Vec<(String, Py)>) -> Result<Py, String> {
    match (args.as_slice(), kwargs.is_empty()) {
        ([Py::Json(Value::String(duration))], true) => {
            let micros = parse_iso_duration_micros(duration)
                .ok_or_else(|| "passes an unsupported offset to timezone()".to_string())?;
            Ok(Py::TimeZone(utc_offset(micros)))
        }
        _ => Err("passes unsupported arguments to timezone()".into()),
    }
}

fn utc_offset(micros: i128) -> String {
    if micros == 0 {
        return "Z".into();
    }
    let sign = if micros < 0 { '-' } else { '+' };
    let total_minutes = micros.abs() / 60_000_000;
    format!("{sign}{:02}:{:02}", total_minutes / 60, total_minutes % 60)
}

/// pydantic (speedate) ISO-8601 duration: `P1Y35DT1H2M3.5S`, `-PT30S`, `PT0S`.
fn iso_duration(micros: i128) -> String {
    let mut out = String::new();
    if micros < 0 {
        out.push('-');
    }
    let micros = micros.abs();
    let total_seconds = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let days = total_seconds / 86_400;
    let secs_of_day = total_seconds % 86_400;
    out.push('P');
    let (years, days) = (days / 365, days % 365);
    if years > 0 {
        out.push_str(&format!("{years}Y"));
    }
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    if secs_of_day > 0 || frac > 0 || (years == 0 && days == 0) {
        out.push('T');
        let (h, m, s) = (
            secs_of_day / 3600,
            (secs_of_day % 3600) / 60,
            secs_of_day % 60,
        );
        if h > 0 {
            out.push_str(&format!("{h}H"));
        }
        if m > 0 {
            out.push_str(&format!("{m}M"));
        }
        if s > 0 || frac > 0 || (h == 0 && m == 0) {
            if frac > 0 {
                let digits = format!("{frac:06}");
                out.push_str(&format!("{s}.{}S", digits.trim_end_matches('0')));
            } else {
                out.push_str(&format!("{s}S"));
            }
        }
    }
    out
}

/// Inverse of [`iso_duration`] for the forms it produces (used for `timezone(timedelta(..))`).
fn parse_iso_duration_micros(text: &str) -> Option<i128> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let rest = rest.strip_prefix('P')?;
    let (date_part, time_part) = match rest.split_once('T') {
        Some((d, t)) => (d, t),
        None => (rest, ""),
    };
    // Checked arithmetic: the text can be any string (`timezone(Path("P99…9Y"))`).
    let scaled = |number: &str, unit: i128| -> Option<i128> {
        number.parse::<i128>().ok()?.checked_mul(unit)
    };
    let mut micros: i128 = 0;
    let mut number = String::new();
    for c in date_part.chars() {
        let part = match c {
            'Y' => scaled(&number, 365 * 86_400_000_000)?,
            'D' => scaled(&number, 86_400_000_000)?,
            c if c.is_ascii_digit() => {
                number.push(c);
                continue;
            }
            _ => return None,
        };
        micros = micros.checked_add(part)?;
        number.clear();
    }
    for c in time_part.chars() {
        let part = match c {
            'H' => scaled(&number, 3_600_000_000)?,
            'M' => scaled(&number, 60_000_000)?,
            'S' => (number.parse::<f64>().ok()? * 1e6).round() as i128,
            c if c.is_ascii_digit() || c == '.' => {
                number.push(c);
                continue;
            }
            _ => return None,
        };
        micros = micros.checked_add(part)?;
        number.clear();
    }
    Some(if negative { -micros } else { micros })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_match_pydantic() {
        let day = 86_400_000_000i128;
        assert_eq!(iso_duration(7 * day), "P7D");
        assert_eq!(iso_duration(400 * day), "P1Y35D");
        assert_eq!(iso_duration(0), "PT0S");
        assert_eq!(iso_duration(1), "PT0.000001S");
        assert_eq!(iso_duration(-30_000_000), "-PT30S");
        assert_eq!(iso_duration(day + 3_600_000_000), "P1DT1H");
        assert_eq!(iso_duration(731 * day + 1_000_000), "P2Y1DT1S");
        assert_eq!(parse_iso_duration_micros("-PT1H30M"), Some(-5_400_000_000));
    }

    #[test]
    fn durations_beyond_python_are_errors_not_overflows() {
        let days = |d: f64| timedelta(vec![Py::Float(d)], Vec::new());
        assert!(days(-1e300).is_err());
        assert!(days(1e300).is_err());
        assert!(days(f64::NAN).is_err());
        assert!(timedelta(vec![Py::Int(-999_999_999)], Vec::new()).is_ok());
        assert!(timedelta(vec![Py::Int(1_000_000_000)], Vec::new()).is_err());
        assert_eq!(
            parse_iso_duration_micros(&format!("P{}Y", "9".repeat(26))),
            None
        );
        assert_eq!(
            parse_iso_duration_micros(&format!("P{}D", "9".repeat(40))),
            None
        );
    }
}
