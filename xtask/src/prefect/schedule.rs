//! Deployment schedules, pure: validate a prefect.yaml schedule item the way
//! Prefect 3.9.1 does (`RawScheduleConfig` + `CronSchedule`/`IntervalSchedule`/
//! `RRuleSchedule`) into a [`ScheduleConfig`], turn it into the [`DesiredSchedule`]
//! the sync engine writes, and build the bodies of the schedule endpoints.
//!
//! Input is the schedule item as JSON *after* templating (schedules may hold
//! step-output placeholders), so messages carry no location: the caller adds
//! file, line and deployment.

use std::collections::HashSet;
use std::sync::OnceLock;

use jiff::civil::DateTime;
use jiff::Timestamp;
use serde_json::{json, Map, Value};

use crate::prefect::json::pydantic_bool;

/// Keys Prefect's `RawScheduleConfig` accepts (`extra="forbid"`).
pub(crate) const SCHEDULE_KEYS: &[&str] = &[
    "cron",
    "interval",
    "rrule",
    "timezone",
    "anchor_date",
    "active",
    "parameters",
    "slug",
    "replaces",
    "day_or",
];

/// Prefect's rrule length cap (`MAX_RRULE_LENGTH`).
const MAX_RRULE_LENGTH: usize = 6500;

/// One validated schedule item of a deployment, as the yaml states it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleConfig {
    pub kind: ScheduleKind,
    /// As written (`None` = not given). Validated against the IANA database.
    pub timezone: Option<String>,
    /// `None` = not given (the server default is active).
    pub active: Option<bool>,
    /// Empty when not given (Prefect only sends non-empty parameters on update).
    pub parameters: Map<String, Value>,
    pub slug: Option<String>,
    pub replaces: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleKind {
    Cron {
        cron: String,
        /// `None` = not given (Prefect's default is true).
        day_or: Option<bool>,
    },
    Interval {
        /// Whole microseconds, as Python's timedelta keeps them, in seconds.
        seconds: f64,
        /// `None` = not given: the client uses "now" on create, the server on update.
        anchor_date: Option<AnchorDate>,
    },
    RRule {
        rrule: String,
    },
}

/// An anchor date with the UTC offset it was written with (the server keeps it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnchorDate {
    pub local: DateTime,
    pub offset_seconds: i32,
}

impl AnchorDate {
    /// Parse like Prefect's `parse_datetime`: ISO-8601 date or date-time, `T` or
    /// space, optional fraction, `Z`/`±HH:MM`/`±HHMM`/`±HH`; naive means UTC.
    pub(crate) fn parse(text: &str) -> Result<AnchorDate, String> {
        let bad = || {
            format!("invalid anchor_date {text:?}: expected an ISO-8601 date-time such as 2026-01-01T00:00:00Z")
        };
        let t = text.trim();
        let (body, offset_seconds) = split_offset(t).ok_or_else(bad)?;
        let body = body.replacen(' ', "T", 1);
        let local: DateTime = if body.len() == 10 {
            let date: jiff::civil::Date = body.parse().map_err(|_| bad())?;
            date.to_datetime(jiff::civil::Time::midnight())
        } else {
            body.parse().map_err(|_| bad())?
        };
        // Python datetimes keep microseconds only.
        let micros = local.subsec_nanosecond() / 1000 * 1000;
        let local = local
            .with()
            .subsec_nanosecond(micros)
            .build()
            .map_err(|_| bad())?;
        Ok(AnchorDate {
            local,
            offset_seconds,
        })
    }

    pub(crate) fn from_timestamp(ts: Timestamp) -> AnchorDate {
        let micros = ts.subsec_nanosecond() / 1000 * 1000;
        let local = ts.to_zoned(jiff::tz::TimeZone::UTC).datetime();
        let local = local
            .with()
            .subsec_nanosecond(micros)
            .build()
            .unwrap_or(local);
        AnchorDate {
            local,
            offset_seconds: 0,
        }
    }

    /// pydantic's JSON form: `2026-01-01T00:00:00Z`, `...T10:00:00.500000+02:00`.
    pub(crate) fn to_json_string(self) -> String {
        let d = self.local;
        let mut s = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            d.year(),
            d.month(),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        );
        let micros = d.subsec_nanosecond() / 1000;
        if micros != 0 {
            s.push_str(&format!(".{micros:06}"));
        }
        if self.offset_seconds == 0 {
            s.push('Z');
        } else {
            let sign = if self.offset_seconds < 0 { '-' } else { '+' };
            let abs = self.offset_seconds.unsigned_abs();
            s.push_str(&format!("{sign}{:02}:{:02}", abs / 3600, (abs % 3600) / 60));
        }
        s
    }
}

/// Split a trailing `Z` / `±HH[:MM]` offset from a date-time text.
fn split_offset(t: &str) -> Option<(&str, i32)> {
    if let Some(body) = t.strip_suffix(['Z', 'z']) {
        return Some((body, 0));
    }
    // Only look for a sign after the time separator (dates contain '-').
    let sep = t.find(['T', 't', ' ']);
    let Some(sep) = sep else { return Some((t, 0)) };
    let time_part = &t[sep + 1..];
    let Some(pos) = time_part.find(['+', '-']) else {
        return Some((t, 0));
    };
    let (body, off) = t.split_at(sep + 1 + pos);
    let sign = if off.starts_with('-') { -1 } else { 1 };
    let digits: String = off[1..].chars().filter(|c| *c != ':').collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (h, m) = match digits.len() {
        2 => (digits.parse::<i32>().ok()?, 0),
        4 => (
            digits[..2].parse::<i32>().ok()?,
            digits[2..].parse::<i32>().ok()?,
        ),
        _ => return None,
    };
    if h > 23 || m > 59 {
        return None;
    }
    Some((body, sign * (h * 3600 + m * 60)))
}

/// Every IANA zone name the bundled database knows, exact case (Prefect compares exactly).
fn timezone_names() -> &'static HashSet<String> {
    static NAMES: OnceLock<HashSet<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: HashSet<String> =
            jiff::tz::db().available().map(|n| n.to_string()).collect();
        names.insert("UTC".to_string());
        names
    })
}

/// `Invalid timezone: "X" (...)` exactly as Prefect words it, or Ok.
pub(crate) fn validate_timezone(tz: &str) -> Result<(), String> {
    if timezone_names().contains(tz) && jiff::tz::TimeZone::get(tz).is_ok() {
        Ok(())
    } else {
        Err(format!(
            "Invalid timezone: \"{tz}\" (specify in IANA tzdata format, for example, America/New_York)"
        ))
    }
}

/// Parse and validate one schedule item (after templating). All problems at once.
pub(crate) fn parse_schedule(item: &Value) -> Result<ScheduleConfig, Vec<String>> {
    let Some(obj) = item.as_object() else {
        return Err(vec![format!(
            "a schedule must be a mapping with one of cron, interval or rrule, got {}",
            json_kind(item)
        )]);
    };
    let mut item = ScheduleItem {
        obj,
        errors: key_problems(obj),
    };
    let selector = item.selector();
    let mut timezone = item.string("timezone");
    let active = item.bool("active");
    let slug = item.string("slug");
    let replaces = item.string("replaces");
    let parameters = item.parameters();
    let day_or = item.bool("day_or");
    let anchor_text = item.anchor_text();
    let kind = match selector {
        Some("cron") => item.cron(day_or),
        Some("interval") => item.interval(anchor_text.as_deref()),
        Some(_) => item.rrule(&mut timezone),
        None => None,
    };
    let errors = &mut item.errors;
    if anchor_text.is_some() && selector.is_some_and(|s| s != "interval") {
        errors.push("`anchor_date` only applies to interval schedules".to_string());
    }
    if day_or.is_some() && selector.is_some_and(|s| s != "cron") {
        errors.push("`day_or` only applies to cron schedules".to_string());
    }
    if let Some(Err(e)) = timezone.as_deref().map(validate_timezone) {
        errors.push(e);
    }
    match kind {
        Some(kind) if errors.is_empty() => Ok(ScheduleConfig {
            kind,
            timezone,
            active,
            parameters,
            slug,
            replaces,
        }),
        _ => Err(item.errors),
    }
}

/// Keys `RawScheduleConfig` rejects (`extra="forbid"`), with a hint for the usual suspects.
fn key_problems(obj: &Map<String, Value>) -> Vec<String> {
    let mut errors = Vec::new();
    for key in obj.keys() {
        if key == "schedule" {
            errors.push(
                "the `schedule:` wrapper form is not supported inside prefect.yaml \
                 (Prefect fails with \"Unknown schedule type\"); put cron/interval/rrule \
                 directly in the item"
                    .to_string(),
            );
        } else if !SCHEDULE_KEYS.contains(&key.as_str()) {
            let hint = match key.as_str() {
                "max_active_runs" | "catchup" => " (a Prefect 2 option that Prefect 3 rejects)",
                "max_scheduled_runs" => " (Prefect's prefect.yaml schedules do not accept it)",
                _ => "",
            };
            errors.push(format!(
                "unknown schedule key `{key}`{hint}; allowed: {}",
                SCHEDULE_KEYS.join(", ")
            ));
        }
    }
    errors
}

/// One schedule item being read, and the problems found so far.
struct ScheduleItem<'a> {
    obj: &'a Map<String, Value>,
    errors: Vec<String>,
}

impl<'a> ScheduleItem<'a> {
    /// The value of `key`, null counting as absent.
    fn given(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    /// The one of cron/interval/rrule the item gives; a problem when there is not exactly one.
    fn selector(&mut self) -> Option<&'static str> {
        let selectors: Vec<&'static str> = ["cron", "interval", "rrule"]
            .into_iter()
            .filter(|k| self.given(k).is_some())
            .collect();
        if selectors.len() != 1 && !self.obj.contains_key("schedule") {
            self.errors.push(format!(
                "Exactly one of 'cron', 'interval', or 'rrule' must be provided (found {})",
                if selectors.is_empty() {
                    "none".to_string()
                } else {
                    selectors.join(", ")
                }
            ));
        }
        match selectors[..] {
            [one] => Some(one),
            _ => None,
        }
    }

    fn string(&mut self, key: &str) -> Option<String> {
        match self.given(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.errors.push(format!(
                    "`{key}` must be a string, got {}",
                    json_kind(other)
                ));
                None
            }
        }
    }

    fn bool(&mut self, key: &str) -> Option<bool> {
        let v = self.given(key)?;
        let parsed = pydantic_bool(v);
        if parsed.is_none() {
            self.errors
                .push(format!("`{key}` must be true or false, got {v}"));
        }
        parsed
    }

    /// Empty when not given (Prefect only sends non-empty parameters on update).
    fn parameters(&mut self) -> Map<String, Value> {
        match self.obj.get("parameters") {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                self.errors.push(format!(
                    "schedule `parameters` must be a mapping, got {}",
                    json_kind(other)
                ));
                Map::new()
            }
        }
    }

    fn anchor_text(&mut self) -> Option<String> {
        match self.given("anchor_date")? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.errors.push(format!(
                    "`anchor_date` must be a date-time string, got {}",
                    json_kind(other)
                ));
                None
            }
        }
    }

    fn cron(&mut self, day_or: Option<bool>) -> Option<ScheduleKind> {
        let cron = self.string("cron")?;
        match validate_cron(&cron) {
            Ok(()) => Some(ScheduleKind::Cron { cron, day_or }),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    fn interval(&mut self, anchor_text: Option<&str>) -> Option<ScheduleKind> {
        let seconds = match self.given("interval") {
            Some(v) => parse_interval(v).map_err(|e| self.errors.push(e)).ok(),
            None => None,
        };
        let anchor_date = match anchor_text.map(AnchorDate::parse).transpose() {
            Ok(anchor_date) => anchor_date,
            Err(e) => {
                self.errors.push(e);
                return None;
            }
        };
        Some(ScheduleKind::Interval {
            seconds: seconds?,
            anchor_date,
        })
    }

    /// Prefect first tries the rrule as a JSON object `{"rrule": ..., "timezone": ...}`; its
    /// timezone applies when the item gives none.
    fn rrule(&mut self, timezone: &mut Option<String>) -> Option<ScheduleKind> {
        let text = self.string("rrule")?;
        let (rrule, json_tz) = match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(o)) => (
                o.get("rrule")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                o.get("timezone")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            ),
            _ => (text.clone(), None),
        };
        if timezone.is_none() {
            *timezone = json_tz;
        }
        match validate_rrule(&rrule) {
            Ok(()) => Some(ScheduleKind::RRule { rrule }),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Interval in seconds (microsecond precision) from int/float seconds, an
/// ISO-8601 duration (`PT10M`, `P1DT2H`, `P1W`), `HH:MM:SS[.f]` or
/// `N day[s], HH:MM:SS`. Must be > 0.
pub(crate) fn parse_interval(v: &Value) -> Result<f64, String> {
    let seconds = match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("invalid interval {n}"))?,
        Value::String(s) => parse_duration_text(s.trim()).ok_or_else(|| {
            format!(
                "invalid interval {s:?}: use seconds (600), an ISO-8601 duration (PT10M) or HH:MM:SS"
            )
        })?,
        other => return Err(format!("interval must be a number of seconds or a duration, got {}", json_kind(other))),
    };
    let micros = (seconds * 1e6).round();
    if !micros.is_finite() || micros <= 0.0 {
        return Err(format!(
            "interval must be greater than 0 seconds (got {seconds})"
        ));
    }
    Ok(micros / 1e6)
}

fn parse_duration_text(s: &str) -> Option<f64> {
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let value = if let Some(iso) = s.strip_prefix('P') {
        parse_iso_duration(iso)?
    } else if let Some((days, clock)) = s.split_once(',') {
        let days = days
            .trim()
            .trim_end_matches("days")
            .trim_end_matches("day")
            .trim();
        days.parse::<f64>().ok()? * 86400.0 + parse_clock(clock.trim())?
    } else if let Some(days) = s.strip_suffix('d') {
        days.parse::<f64>().ok()? * 86400.0
    } else {
        parse_clock(s)?
    };
    Some(if negative { -value } else { value })
}

/// `H+:MM:SS[.f]` (minutes and seconds 0-59).
fn parse_clock(s: &str) -> Option<f64> {
    let mut parts = s.split(':');
    let (h, m, sec) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || h.is_empty() || m.len() != 2 || sec.len() < 2 {
        return None;
    }
    if !h.chars().all(|c| c.is_ascii_digit()) || !m.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (h, m): (f64, f64) = (h.parse().ok()?, m.parse().ok()?);
    let sec: f64 = if sec.chars().all(|c| c.is_ascii_digit() || c == '.') {
        sec.parse().ok()?
    } else {
        return None;
    };
    if m >= 60.0 || sec >= 60.0 {
        return None;
    }
    Some(h * 3600.0 + m * 60.0 + sec)
}

/// ISO-8601 duration after the `P`: `[nY][nM][nW][nD][T[nH][nM][nS]]` (Y = 365 d, M = 30 d like pydantic).
fn parse_iso_duration(s: &str) -> Option<f64> {
    if s.is_empty() || s == "T" {
        return None;
    }
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => {
            if t.is_empty() {
                return None;
            }
            (d, Some(t))
        }
        None => (s, None),
    };
    let mut total = 0.0;
    let mut consume = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut number = String::new();
        let mut allowed = units.iter();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
            } else {
                // Units must appear in order, each at most once.
                let factor = loop {
                    let (u, f) = allowed.next()?;
                    if *u == c {
                        break *f;
                    }
                };
                if number.is_empty() {
                    return None;
                }
                total += number.parse::<f64>().ok()? * factor;
                number.clear();
            }
        }
        number.is_empty().then_some(())
    };
    consume(
        date,
        &[
            ('Y', 365.0 * 86400.0),
            ('M', 30.0 * 86400.0),
            ('W', 7.0 * 86400.0),
            ('D', 86400.0),
        ],
    )?;
    if let Some(time) = time {
        consume(time, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    Some(total)
}

// ---------------------------------------------------------------- cron

const CRON_ALIASES: &[&str] = &[
    "@midnight",
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
];
const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Validate a cron string like Prefect's `validate_cron_string` (croniter):
/// 5 fields, or 6 (+ seconds) or 7 (+ seconds, year); names, ranges, steps,
/// lists, `L` (day of month), `?`, `#` (weekday), `@daily`-style aliases.
/// Random/hashed (`R`/`H`) fields are rejected.
pub(crate) fn validate_cron(cron: &str) -> Result<(), String> {
    let invalid = || format!("Invalid cron string: \"{cron}\"");
    let trimmed = cron.trim();
    if trimmed.starts_with('@') {
        return if CRON_ALIASES.contains(&trimmed.to_ascii_lowercase().as_str()) {
            Ok(())
        } else {
            Err(invalid())
        };
    }
    let fields: Vec<&str> = trimmed.split_whitespace().collect();
    if fields.iter().any(|f| f.eq_ignore_ascii_case("r")) {
        return Err(format!(
            "Random and Hashed expressions are unsupported, received: \"{cron}\""
        ));
    }
    if !(5..=7).contains(&fields.len()) {
        return Err(invalid());
    }
    // (min, max, names)
    let specs: [(u32, u32, &[&str]); 7] = [
        (0, 59, &[]),
        (0, 23, &[]),
        (1, 31, &[]),
        (1, 12, MONTHS),
        (0, 7, WEEKDAYS),
        (0, 59, &[]),
        (1970, 2099, &[]),
    ];
    for (index, field) in fields.iter().enumerate() {
        let (min, max, names) = specs[index];
        if !valid_cron_field(field, index, min, max, names) {
            return Err(invalid());
        }
    }
    Ok(())
}

fn valid_cron_field(field: &str, index: usize, min: u32, max: u32, names: &[&str]) -> bool {
    let value = |s: &str| -> Option<u32> {
        if let Some(pos) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Some(pos as u32 + if index == 3 { 1 } else { 0 });
        }
        if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse::<u32>().ok().filter(|v| (min..=max).contains(v))
    };
    field.split(',').all(|item| {
        if item.is_empty() {
            return false;
        }
        let (base, step) = match item.split_once('/') {
            Some((b, s)) => (b, Some(s)),
            None => (item, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(s) if s > 0 => {}
                _ => return false,
            }
        }
        if base == "*" || (base == "?" && (index == 2 || index == 4)) {
            return true;
        }
        if index == 2 && base.eq_ignore_ascii_case("l") && step.is_none() {
            return true;
        }
        if index == 4 {
            if let Some((day, nth)) = base.split_once('#') {
                return step.is_none()
                    && value(day).is_some()
                    && matches!(nth.parse::<u32>(), Ok(1..=5));
            }
        }
        match base.split_once('-') {
            Some((a, b)) => value(a).is_some() && value(b).is_some(),
            None => value(base).is_some(),
        }
    })
}

// ---------------------------------------------------------------- rrule

const RRULE_PARTS: &[&str] = &[
    "FREQ",
    "INTERVAL",
    "COUNT",
    "UNTIL",
    "WKST",
    "BYSETPOS",
    "BYMONTH",
    "BYMONTHDAY",
    "BYYEARDAY",
    "BYEASTER",
    "BYWEEKNO",
    "BYDAY",
    "BYWEEKDAY",
    "BYHOUR",
    "BYMINUTE",
    "BYSECOND",
];
const FREQUENCIES: &[&str] = &[
    "YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY", "MINUTELY", "SECONDLY",
];

/// Validate an RRULE string the way dateutil's `rrulestr` would reject it:
/// `DTSTART`/`RRULE`/`EXRULE`/`RDATE`/`EXDATE` lines, every rule with a known
/// FREQ and only known parts.
pub(crate) fn validate_rrule(rrule: &str) -> Result<(), String> {
    let invalid = |why: &str| format!("Invalid RRule string \"{rrule}\": {why}");
    if rrule.trim().is_empty() {
        return Err(invalid("empty rule"));
    }
    if rrule.len() > MAX_RRULE_LENGTH {
        return Err(invalid(&format!(
            "Max length is {MAX_RRULE_LENGTH}, got {}",
            rrule.len()
        )));
    }
    let mut rules = 0;
    for line in rrule
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let upper = line.to_ascii_uppercase();
        let (name, value) = match upper.split_once(':') {
            Some((n, v)) => (n.split(';').next().unwrap_or("").to_string(), v.to_string()),
            None => ("RRULE".to_string(), upper.clone()),
        };
        match name.as_str() {
            "RRULE" | "EXRULE" => {
                validate_rule_body(&value).map_err(|e| invalid(&e))?;
                if name == "RRULE" {
                    rules += 1;
                }
            }
            "DTSTART" | "RDATE" | "EXDATE" => {
                if value.is_empty() {
                    return Err(invalid(&format!("empty {name}")));
                }
            }
            other => return Err(invalid(&format!("unsupported property: {other}"))),
        }
    }
    if rules == 0 && !rrule.to_ascii_uppercase().contains("RDATE") {
        return Err(invalid("no RRULE"));
    }
    Ok(())
}

fn validate_rule_body(body: &str) -> Result<(), String> {
    let mut freq = None;
    for part in body.split(';').filter(|p| !p.is_empty()) {
        let Some((name, value)) = part.split_once('=') else {
            return Err(format!("expected NAME=VALUE, got {part:?}"));
        };
        if !RRULE_PARTS.contains(&name) {
            return Err(format!("unknown parameter name {name:?}"));
        }
        if value.is_empty() {
            return Err(format!("empty value for {name}"));
        }
        match name {
            "FREQ" => {
                if !FREQUENCIES.contains(&value) {
                    return Err(format!("invalid FREQ {value:?}"));
                }
                freq = Some(value.to_string());
            }
            "INTERVAL" | "COUNT" if value.parse::<u32>().is_err() => {
                return Err(format!("invalid {name} {value:?}"));
            }
            _ => {}
        }
    }
    if freq.is_none() {
        return Err("FREQ is required".to_string());
    }
    Ok(())
}

/// `DTSTART` injection as Prefect's `normalize_rrule_string` does it: unchanged
/// if a DTSTART is present; a recent phase-equivalent anchor for SECONDLY/MINUTELY
/// rules without COUNT (wall clock in `timezone`); otherwise 2020-01-01.
pub(crate) fn normalize_rrule(rrule: &str, timezone: Option<&str>, now: Timestamp) -> String {
    if rrule.to_ascii_uppercase().contains("DTSTART") {
        return rrule.to_string();
    }
    let legacy = DateTime::constant(2020, 1, 1, 0, 0, 0, 0);
    let upper = rrule.to_ascii_uppercase();
    let lines: Vec<&str> = upper.split('\n').filter(|l| !l.trim().is_empty()).collect();
    let single_rule = lines.len() == 1
        && !upper.contains("RDATE")
        && !upper.contains("EXDATE")
        && !upper.contains("EXRULE");
    let body = lines
        .first()
        .map(|l| l.trim().trim_start_matches("RRULE:"))
        .unwrap_or("");
    let part = |name: &str| {
        body.split(';').find_map(|p| {
            p.split_once('=')
                .filter(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
    };
    let unit = match part("FREQ").as_deref() {
        Some("SECONDLY") => 1i64,
        Some("MINUTELY") => 60,
        _ => 0,
    };
    let interval = part("INTERVAL")
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(1);
    let dtstart = if !single_rule || unit == 0 || part("COUNT").is_some() || interval <= 0 {
        legacy
    } else {
        let tz = timezone
            .and_then(|t| jiff::tz::TimeZone::get(t).ok())
            .unwrap_or(jiff::tz::TimeZone::UTC);
        let local_now = now.to_zoned(tz).datetime();
        let delta = legacy.duration_until(local_now).as_secs();
        if delta <= 0 {
            legacy
        } else {
            let period = unit * interval;
            let k = delta / period;
            legacy
                .checked_add(jiff::SignedDuration::from_secs(k * period))
                .unwrap_or(legacy)
        }
    };
    format!(
        "DTSTART:{:04}{:02}{:02}T{:02}{:02}{:02}\n{rrule}",
        dtstart.year(),
        dtstart.month(),
        dtstart.day(),
        dtstart.hour(),
        dtstart.minute(),
        dtstart.second()
    )
}

/// `now` as Prefect's client writes it: UTC, microseconds, `Z`.
pub(crate) fn format_now(now: Timestamp) -> String {
    AnchorDate::from_timestamp(now).to_json_string()
}

fn json_f64(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

impl ScheduleConfig {
    /// The timezone Prefect ends up with: cron keeps `None`, interval and rrule default to UTC.
    fn effective_timezone(&self) -> Option<String> {
        match self.kind {
            ScheduleKind::Cron { .. } => self.timezone.clone(),
            _ => Some(self.timezone.clone().unwrap_or_else(|| "UTC".to_string())),
        }
    }

    /// The `schedule` object of the create payload (`POST /deployments/`).
    /// `now` fills a missing interval anchor (client time) and rrule DTSTART.
    pub(crate) fn schedule_object(&self, now: Timestamp) -> Value {
        match &self.kind {
            ScheduleKind::Cron { cron, day_or } => json!({
                "cron": cron,
                "timezone": self.timezone,
                "day_or": day_or.unwrap_or(true),
            }),
            ScheduleKind::Interval {
                seconds,
                anchor_date,
            } => json!({
                "interval": json_f64(*seconds),
                "anchor_date": anchor_date.map_or_else(|| format_now(now), |a| a.to_json_string()),
                "timezone": self.effective_timezone(),
            }),
            ScheduleKind::RRule { rrule } => json!({
                "rrule": normalize_rrule(rrule, self.timezone.as_deref(), now),
                "timezone": self.effective_timezone(),
            }),
        }
    }

    /// The schedule the server should have, as Prefect's client would create it at `now`.
    pub fn desired(&self, now: Timestamp) -> DesiredSchedule {
        let anchor_explicit = match &self.kind {
            ScheduleKind::Interval { anchor_date, .. } => anchor_date.is_some(),
            ScheduleKind::RRule { rrule } => rrule.to_ascii_uppercase().contains("DTSTART"),
            ScheduleKind::Cron { .. } => true,
        };
        DesiredSchedule {
            schedule: self.schedule_object(now),
            anchor_explicit,
            active: self.active.unwrap_or(true),
            parameters: self.parameters.clone(),
            slug: self.slug.clone(),
        }
    }
}

/// One schedule the server should have, in the API's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredSchedule {
    /// The `schedule` object as Prefect's create payload sends it
    /// (`{"cron", "timezone", "day_or"}`, `{"interval", "anchor_date", "timezone"}` or `{"rrule", "timezone"}`).
    pub schedule: Value,
    /// False when the yaml did not write the schedule's start: an interval without `anchor_date`
    /// or an rrule without `DTSTART`. Then any start on the server matches, so a re-run does not
    /// reset it (Prefect resets an interval's anchor to "now" on every deploy).
    pub anchor_explicit: bool,
    pub active: bool,
    pub parameters: Map<String, Value>,
    pub slug: Option<String>,
}

impl DesiredSchedule {
    /// A schedule as the server returns it (a DeploymentSchedule), to be put back as it is.
    pub(crate) fn from_server(schedule: &Value) -> DesiredSchedule {
        DesiredSchedule {
            schedule: schedule.get("schedule").cloned().unwrap_or(Value::Null),
            anchor_explicit: true,
            active: schedule
                .get("active")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            parameters: schedule
                .get("parameters")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            slug: schedule
                .get("slug")
                .and_then(Value::as_str)
                .map(String::from),
        }
    }

    /// The body of one schedule in `POST /deployments/` and `POST /deployments/{id}/schedules`.
    pub fn create_body(&self) -> Value {
        json!({
            "schedule": self.schedule,
            "active": self.active,
            "max_scheduled_runs": null,
            "parameters": self.parameters,
            "slug": self.slug,
        })
    }

    /// The `PATCH /deployments/{id}/schedules/{sid}` body that makes a schedule equal this one.
    /// A slug is only sent when there is one: a PATCH cannot clear it.
    pub fn patch_body(&self) -> Value {
        let mut body = json!({"schedule": self.schedule, "active": self.active, "parameters": self.parameters});
        if let (Some(slug), Value::Object(map)) = (&self.slug, &mut body) {
            map.insert("slug".into(), json!(slug));
        }
        body
    }
}

/// A server schedule (a DeploymentSchedule) as a create body that puts it back as it was,
/// `max_scheduled_runs` included (yaml schedules never set it).
pub(crate) fn recreate_body(server: &Value) -> Value {
    let mut body = DesiredSchedule::from_server(server).create_body();
    body["max_scheduled_runs"] = server
        .get("max_scheduled_runs")
        .cloned()
        .unwrap_or(Value::Null);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-27T04:28:17.634485Z".parse().unwrap()
    }

    fn ok(v: Value) -> ScheduleConfig {
        parse_schedule(&v).unwrap_or_else(|e| panic!("{v}: {e:?}"))
    }

    fn err(v: Value) -> String {
        parse_schedule(&v)
            .expect_err("should be rejected")
            .join("; ")
    }

    // Expected payloads: protocol §5.10 and Prefect 3.9.1's
    // `_schedule_config_to_deployment_schedule` run in the venv.
    #[test]
    fn create_payload_schedule_objects_match_prefect() {
        let s = ok(json!({"cron": "0 9 * * *", "timezone": "America/New_York"}));
        assert_eq!(
            s.schedule_object(now()),
            json!({"cron": "0 9 * * *", "timezone": "America/New_York", "day_or": true})
        );
        let s = ok(json!({"cron": "*/5 * * * *", "day_or": false}));
        assert_eq!(
            s.schedule_object(now()),
            json!({"cron": "*/5 * * * *", "timezone": null, "day_or": false})
        );
        let s = ok(json!({"interval": 600}));
        assert_eq!(
            serde_json::to_string(&s.schedule_object(now())).unwrap(),
            r#"{"interval":600.0,"anchor_date":"2026-11-27T04:28:17.634485Z","timezone":"UTC"}"#
        );
        let s = ok(
            json!({"interval": 3600, "anchor_date": "2026-01-01T00:00:00", "timezone": "Europe/Berlin"}),
        );
        assert_eq!(
            s.schedule_object(now()),
            json!({"interval": 3600.0, "anchor_date": "2026-01-01T00:00:00Z", "timezone": "Europe/Berlin"})
        );
        let s = ok(json!({"interval": 3600, "anchor_date": "2026-01-01T10:00:00+02:00"}));
        assert_eq!(
            s.schedule_object(now())["anchor_date"],
            "2026-01-01T10:00:00+02:00"
        );
        let s = ok(json!({"interval": 3600, "anchor_date": "2026-01-01"}));
        assert_eq!(
            s.schedule_object(now())["anchor_date"],
            "2026-01-01T00:00:00Z"
        );
        let s = ok(json!({"rrule": "FREQ=DAILY;COUNT=3", "timezone": "UTC"}));
        assert_eq!(
            s.schedule_object(now()),
            json!({"rrule": "DTSTART:20200101T000000\nFREQ=DAILY;COUNT=3", "timezone": "UTC"})
        );
        let s =
            ok(json!({"rrule": "{\"rrule\": \"FREQ=DAILY\", \"timezone\": \"Europe/Berlin\"}"}));
        assert_eq!(
            s.kind,
            ScheduleKind::RRule {
                rrule: "FREQ=DAILY".into()
            }
        );
        assert_eq!(s.timezone.as_deref(), Some("Europe/Berlin"));
    }

    #[test]
    fn create_and_patch_bodies() {
        let s = ok(
            json!({"cron": "0 0 * * *", "active": false, "parameters": {"n": 2}, "slug": "five-min"}),
        )
        .desired(now());
        assert_eq!(
            serde_json::to_string(&s.create_body()).unwrap(),
            r#"{"schedule":{"cron":"0 0 * * *","timezone":null,"day_or":true},"active":false,"max_scheduled_runs":null,"parameters":{"n":2},"slug":"five-min"}"#
        );
        assert_eq!(
            serde_json::to_string(&s.patch_body()).unwrap(),
            r#"{"schedule":{"cron":"0 0 * * *","timezone":null,"day_or":true},"active":false,"parameters":{"n":2},"slug":"five-min"}"#
        );
        // Without a slug none is sent on PATCH (a PATCH cannot clear one); active by default.
        let s = ok(json!({"interval": 600})).desired(now());
        assert_eq!(
            s.patch_body(),
            json!({"schedule": {"interval": 600.0, "anchor_date": "2026-11-27T04:28:17.634485Z", "timezone": "UTC"}, "active": true, "parameters": {}})
        );
    }

    #[test]
    fn anchors_the_yaml_does_not_write_are_not_owned() {
        for (item, explicit) in [
            (json!({"cron": "0 0 * * *"}), true),
            (json!({"interval": 600}), false),
            (
                json!({"interval": 600, "anchor_date": "2026-01-01T00:00:00Z"}),
                true,
            ),
            (json!({"rrule": "FREQ=DAILY"}), false),
            (
                json!({"rrule": "DTSTART:20250101T000000\nFREQ=DAILY"}),
                true,
            ),
        ] {
            assert_eq!(
                ok(item.clone()).desired(now()).anchor_explicit,
                explicit,
                "{item}"
            );
        }
    }

    #[test]
    fn server_schedules_are_put_back_as_they_were() {
        let server = json!({"id": "s1", "created": "2026-01-01T00:00:00Z",
            "schedule": {"cron": "0 0 * * *", "timezone": "UTC", "day_or": true},
            "active": false, "max_scheduled_runs": 5, "parameters": {"n": 1}, "slug": null});
        let d = DesiredSchedule::from_server(&server);
        assert!(d.anchor_explicit && !d.active && d.slug.is_none());
        assert_eq!(
            serde_json::to_string(&recreate_body(&server)).unwrap(),
            r#"{"schedule":{"cron":"0 0 * * *","timezone":"UTC","day_or":true},"active":false,"max_scheduled_runs":5,"parameters":{"n":1},"slug":null}"#
        );
        assert_eq!(
            recreate_body(&json!({"schedule": {"interval": 60.0}})),
            json!({"schedule": {"interval": 60.0}, "active": true, "max_scheduled_runs": null, "parameters": {}, "slug": null})
        );
    }

    #[test]
    fn rrule_dtstart_injection() {
        // Observed on a 3.9.1 server at 2026-11-27T04:30Z: FREQ=MINUTELY;INTERVAL=7 in Europe/Berlin → 20261127T052600.
        let at: Timestamp = "2026-11-27T04:30:28Z".parse().unwrap();
        assert_eq!(
            normalize_rrule("FREQ=MINUTELY;INTERVAL=7", Some("Europe/Berlin"), at),
            "DTSTART:20261127T052600\nFREQ=MINUTELY;INTERVAL=7"
        );
        assert_eq!(
            normalize_rrule("FREQ=WEEKLY;BYDAY=MO,WE", None, at),
            "DTSTART:20200101T000000\nFREQ=WEEKLY;BYDAY=MO,WE"
        );
        assert_eq!(
            normalize_rrule("FREQ=MINUTELY;COUNT=5", None, at),
            "DTSTART:20200101T000000\nFREQ=MINUTELY;COUNT=5"
        );
        assert_eq!(
            normalize_rrule("DTSTART:20250101T000000\nFREQ=DAILY", None, at),
            "DTSTART:20250101T000000\nFREQ=DAILY"
        );
    }

    #[test]
    fn intervals_in_every_accepted_form() {
        for (v, secs) in [
            (json!(600), 600.0),
            (json!(600.5), 600.5),
            (json!(3600.0), 3600.0),
            (json!("01:00:00"), 3600.0),
            (json!("1:00:00.5"), 3600.5),
            (json!("PT10M"), 600.0),
            (json!("PT1.5H"), 5400.0),
            (json!("P1D"), 86400.0),
            (json!("P1W"), 604800.0),
            (json!("P2DT3H4M5.5S"), 183845.5),
            (json!("PT0.5S"), 0.5),
            (json!("1 day, 0:00:00"), 86400.0),
            (json!("2 days, 01:00:00"), 176400.0),
            (json!("100:00:00"), 360000.0),
        ] {
            assert_eq!(parse_interval(&v), Ok(secs), "{v}");
        }
        for v in [
            json!(0),
            json!(-5),
            json!("-PT5S"),
            json!("PT"),
            json!("P"),
            json!("pt10m"),
            json!("1:60:00"),
            json!("600"),
            json!(true),
        ] {
            assert!(parse_interval(&v).is_err(), "{v}");
        }
        assert!(err(json!({"interval": 0})).contains("greater than 0"));
    }

    #[test]
    fn cron_validation_matches_croniter() {
        // Each answer checked with prefect._internal.schemas.validators.validate_cron_string.
        for c in [
            "0 9 * * *",
            "*/5 * * * *",
            "@daily",
            "@hourly",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
            "@midnight",
            "@DAILY",
            "0 0 * * * 30",
            "0 0 * * * * 2030",
            "* * * * 7",
            "* * * JAN *",
            "* * * jan-mar *",
            "* * * * MON-FRI",
            "* * * * sun",
            "* * * * mon#2",
            "* * * * 5#3",
            "* * L * *",
            "* * ? * *",
            "* * * * ?",
            "1-5/2 * * * *",
            "5-1 * * * *",
            "*/15 0-23/2 1,15 JAN-DEC sun",
            "0 9 * * * ",
            "  0 9 * * *",
            "1/2 * * * *",
            "* * * * MON-sun",
            "* * * * 0-7",
            "0 0 30 2 *",
            "* * 1-31/40 * *",
            "01 * * * *",
        ] {
            assert_eq!(validate_cron(c), Ok(()), "{c:?}");
        }
        for c in [
            "@reboot",
            "0 0 * * * 60",
            "0 0 * * * 0 1969",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * 32 * *",
            "* * * 0 *",
            "* * * 13 *",
            "* * * * 8",
            "* * * * 5L",
            "* * 15W * *",
            "*/0 * * * *",
            "H * * * *",
            "R * * * *",
            "* * * *",
            "* * * * * * * *",
            "0,  9 * * * *",
            "a * * * *",
            "1- * * * *",
            "-1 * * * *",
            "* * * * 1,2,,3",
            "not a cron",
        ] {
            assert!(validate_cron(c).is_err(), "{c:?}");
        }
        assert_eq!(
            validate_cron("not a cron"),
            Err("Invalid cron string: \"not a cron\"".to_string())
        );
        assert!(validate_cron("R * * * *")
            .unwrap_err()
            .starts_with("Random and Hashed"));
    }

    #[test]
    fn rrule_validation() {
        for r in [
            "FREQ=DAILY;COUNT=3",
            "RRULE:FREQ=WEEKLY;BYDAY=MO,WE",
            "DTSTART:20200101T000000\nRRULE:FREQ=DAILY",
            "freq=daily",
        ] {
            assert_eq!(validate_rrule(r), Ok(()), "{r:?}");
        }
        for r in [
            "BADRULE",
            "FREQ=SOMETIMES",
            "INTERVAL=2",
            "FREQ=DAILY;FOO=1",
            "FREQ=DAILY;COUNT=x",
            "",
        ] {
            assert!(validate_rrule(r).is_err(), "{r:?}");
        }
    }

    #[test]
    fn rejected_items_report_every_problem() {
        let e = err(json!({"cron": "0 9 * * *", "max_active_runs": 1, "catchup": false}));
        assert!(
            e.contains("`max_active_runs`") && e.contains("`catchup`"),
            "{e}"
        );
        assert!(err(json!({"cron": "0 9 * * *", "interval": 60})).contains("Exactly one of"));
        assert!(err(json!({"timezone": "UTC"})).contains("Exactly one of"));
        assert!(err(json!({})).contains("Exactly one of"));
        assert!(
            err(json!({"schedule": {"cron": "0 9 * * *"}, "active": false})).contains("wrapper")
        );
        assert_eq!(
            err(json!({"cron": "0 9 * * *", "timezone": "Nope/Zone"})),
            "Invalid timezone: \"Nope/Zone\" (specify in IANA tzdata format, for example, America/New_York)"
        );
        assert!(
            err(json!({"cron": "0 9 * * *", "timezone": "europe/berlin"}))
                .contains("Invalid timezone")
        );
        assert!(err(json!({"cron": 5})).contains("must be a string"));
        assert!(
            err(json!({"interval": 60, "anchor_date": "garbage"})).contains("invalid anchor_date")
        );
        assert!(
            err(json!({"cron": "0 0 * * *", "anchor_date": "2026-01-01"})).contains("only applies")
        );
        assert!(err(json!({"cron": "0 0 * * *", "active": "maybe"})).contains("`active`"));
        assert!(err(json!("0 9 * * *")).contains("must be a mapping"));
    }

    #[test]
    fn lenient_values_prefect_accepts() {
        assert_eq!(
            ok(json!({"cron": "0 9 * * *", "active": "yes"})).active,
            Some(true)
        );
        assert_eq!(
            ok(json!({"cron": "0 9 * * *", "day_or": "false"})).kind,
            ScheduleKind::Cron {
                cron: "0 9 * * *".into(),
                day_or: Some(false)
            }
        );
        assert_eq!(
            ok(json!({"cron": "0 9 * * *", "timezone": null})).timezone,
            None
        );
        for tz in [
            "UTC",
            "Etc/UTC",
            "America/New_York",
            "Europe/Berlin",
            "US/Eastern",
            "Asia/Kolkata",
        ] {
            assert_eq!(validate_timezone(tz), Ok(()), "{tz}");
        }
    }
}
