//! Dates and times in SNMP values, as Unix seconds the way snmp_exporter
//! reads them: RFC 2579 `DateAndTime` octets, NTP timestamps, and text parsed
//! with a strptime-style `datetime_pattern` (the directives of the Go library
//! snmp_exporter uses). Out-of-range fields normalise as Go's `time.Date`
//! does (month 13 is January of the next year).

/// Seconds from 1970-01-01 to `year-month-day` (proleptic Gregorian), with
/// the month normalised first and the day added linearly, as Go does.
pub fn unix_days(year: i64, month: i64, day: i64) -> i64 {
    let m0 = month - 1;
    let year = year + m0.div_euclid(12);
    let month = m0.rem_euclid(12) + 1;
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468 + (day - 1)
}

/// `time.Date(...).Unix()` for the given fields and UTC offset in seconds.
pub fn unix_seconds(
    fields: [i64; 6], // year, month, day, hour, minute, second
    nanoseconds: i64,
    utc_offset_seconds: i64,
) -> i64 {
    let [year, month, day, hour, minute, second] = fields;
    unix_days(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - utc_offset_seconds
        + nanoseconds.div_euclid(1_000_000_000)
}

/// RFC 2579 DateAndTime: 8 octets (UTC) or 11 (with `+`/`-` hours minutes).
pub fn date_and_time(octets: &[u8]) -> Result<f64, String> {
    let offset = match octets.len() {
        8 => 0,
        11 => {
            let sign = match octets[8] {
                b'+' => 1,
                b'-' => -1,
                other => return Err(format!("bad time zone direction {other:#04x}")),
            };
            let (hours, minutes) = (i64::from(octets[9]), i64::from(octets[10]));
            if hours > 24 || minutes > 60 {
                return Err(format!("bad time zone offset {hours}:{minutes}"));
            }
            sign * (hours * 3600 + minutes * 60)
        }
        n => return Err(format!("invalid DateAndTime length {n}")),
    };
    let year = i64::from(u16::from_be_bytes([octets[0], octets[1]]));
    let fields = [
        year,
        octets[2].into(),
        octets[3].into(),
        octets[4].into(),
        octets[5].into(),
        octets[6].into(),
    ];
    Ok(unix_seconds(fields, i64::from(octets[7]) * 100_000_000, offset) as f64)
}

/// NTP timestamp (seconds since 1900 in the first four octets).
pub fn ntp_timestamp(octets: &[u8]) -> Result<f64, String> {
    if octets.len() < 8 {
        return Err(format!(
            "invalid NTPTimeStamp length {}, expected at least 8",
            octets.len()
        ));
    }
    let seconds = i64::from(u32::from_be_bytes([
        octets[0], octets[1], octets[2], octets[3],
    ]));
    Ok((seconds - 2_208_988_800) as f64)
}

const SHORT_MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const LONG_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const SHORT_DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const LONG_DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Expansions of the composite directives.
fn composite(directive: u8) -> Option<&'static str> {
    Some(match directive {
        b'c' => "%a %b %e %H:%M:%S %Y",
        b'v' => "%e-%b-%Y",
        b'r' => "%I:%M:%S %p",
        b'F' => "%Y-%m-%d",
        b'D' | b'x' => "%m/%d/%y",
        b'T' | b'X' => "%H:%M:%S",
        b'R' => "%H:%M",
        _ => return None,
    })
}

const SIMPLE: &[u8] = b"YyCmBbhAawudejHkIlPpMSsfzZtn%";

/// Checks that every directive of `pattern` is one this reader supports.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    let bytes = pattern.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let Some(&d) = bytes.get(i + 1) else {
                return Err(format!(
                    "datetime_pattern `{pattern}`: stray `%` at the end"
                ));
            };
            if !SIMPLE.contains(&d) && composite(d).is_none() {
                return Err(format!(
                    "datetime_pattern `{pattern}`: unsupported directive `%{}`",
                    d as char
                ));
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    Ok(())
}

struct Parsed {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    nanos: i64,
    yday: i64,
    century: Option<i64>,
    pm: bool,
    offset: i64,
    unix: Option<i64>,
}

/// Parses `text` with `pattern` into Unix seconds (UTC unless `%z` says
/// otherwise); the whole text must be consumed.
pub fn parse_with_pattern(text: &str, pattern: &str) -> Result<f64, String> {
    let mut p = Parsed {
        year: 1900,
        month: 1,
        day: 0,
        hour: 0,
        minute: 0,
        second: 0,
        nanos: 0,
        yday: 0,
        century: None,
        pm: false,
        offset: 0,
        unix: None,
    };
    let mut pos = 0;
    parse_into(text.as_bytes(), &mut pos, pattern.as_bytes(), &mut p)?;
    if pos < text.len() {
        return Err(format!("unparsed text {:?}", &text[pos..]));
    }
    if let Some(unix) = p.unix {
        return Ok(unix as f64);
    }
    if p.pm {
        p.hour += 12;
    }
    if let Some(century) = p.century {
        p.year = century * 100 + p.year % 100;
    }
    let (month, day) = if p.day == 0 {
        if p.yday > 0 {
            (1, p.yday)
        } else {
            (p.month, 1)
        }
    } else {
        (p.month, p.day)
    };
    Ok(unix_seconds(
        [p.year, month, day, p.hour, p.minute, p.second],
        p.nanos,
        p.offset,
    ) as f64)
}

fn parse_into(src: &[u8], pos: &mut usize, format: &[u8], p: &mut Parsed) -> Result<(), String> {
    let mut i = 0;
    while i < format.len() {
        let b = format[i];
        if b != b'%' {
            if src.get(*pos) != Some(&b) {
                return Err(format!("expected {:?}", b as char));
            }
            *pos += 1;
            i += 1;
            continue;
        }
        let d = *format.get(i + 1).ok_or("stray `%`")?;
        i += 2;
        if let Some(expansion) = composite(d) {
            parse_into(src, pos, expansion.as_bytes(), p)?;
            continue;
        }
        let skip_space = |pos: &mut usize| {
            if src.get(*pos) == Some(&b' ') {
                *pos += 1;
            }
        };
        match d {
            b'Y' => {
                let negative = src.get(*pos) == Some(&b'-');
                if negative {
                    *pos += 1;
                }
                let y = number(src, pos, 4, 0, 9999, d)?;
                p.year = if negative { -y } else { y };
            }
            b'y' => {
                let y = number(src, pos, 2, 0, 99, d)?;
                p.year = if y < 69 { y + 2000 } else { y + 1900 };
            }
            b'C' => p.century = Some(number(src, pos, 2, 0, 99, d)?),
            b'm' => p.month = number(src, pos, 2, 1, 12, d)?,
            b'B' => p.month = word(src, pos, &LONG_MONTHS, d)?,
            b'b' | b'h' => p.month = word(src, pos, &SHORT_MONTHS, d)?,
            b'A' => {
                word(src, pos, &LONG_DAYS, d)?;
            }
            b'a' => {
                word(src, pos, &SHORT_DAYS, d)?;
            }
            b'w' => {
                number(src, pos, 1, 0, 6, d)?;
            }
            b'u' => {
                number(src, pos, 1, 1, 7, d)?;
            }
            b'e' => {
                skip_space(pos);
                p.day = number(src, pos, 2, 1, 31, d)?;
            }
            b'd' => p.day = number(src, pos, 2, 1, 31, d)?,
            b'j' => p.yday = number(src, pos, 3, 1, 366, d)?,
            b'k' => {
                skip_space(pos);
                p.hour = number(src, pos, 2, 0, 23, d)?;
            }
            b'H' => p.hour = number(src, pos, 2, 0, 23, d)?,
            b'l' | b'I' => {
                if d == b'l' {
                    skip_space(pos);
                }
                let h = number(src, pos, 2, 1, 12, d)?;
                p.hour = if h == 12 { 0 } else { h };
            }
            b'P' | b'p' => p.pm = word(src, pos, &["AM", "PM"], d)? == 2,
            b'M' => p.minute = number(src, pos, 2, 0, 59, d)?,
            b'S' => p.second = number(src, pos, 2, 0, 60, d)?,
            b's' => {
                let negative = src.get(*pos) == Some(&b'-');
                if negative {
                    *pos += 1;
                }
                let n = number(src, pos, 19, 0, i64::MAX, d)?;
                p.unix = Some(if negative { -n } else { n });
            }
            b'f' => {
                let start = *pos;
                let mut micros = number(src, pos, 6, 0, 999_999, d)?;
                for _ in (*pos - start)..6 {
                    micros *= 10;
                }
                p.nanos = micros * 1000;
            }
            b'z' => match src.get(*pos) {
                Some(b'Z') => {
                    *pos += 1;
                    p.offset = 0;
                }
                Some(&sign @ (b'+' | b'-')) => {
                    *pos += 1;
                    let h = number(src, pos, 2, 0, 23, d)?;
                    if src.get(*pos) == Some(&b':') {
                        *pos += 1;
                    }
                    let start = *pos;
                    let m = number(src, pos, 2, 0, 59, d).unwrap_or_else(|_| {
                        *pos = start;
                        0
                    });
                    let seconds = h * 3600 + m * 60;
                    p.offset = if sign == b'-' { -seconds } else { seconds };
                }
                _ => return Err("cannot parse \"%z\"".into()),
            },
            b'Z' => {
                let start = *pos;
                while src.get(*pos).is_some_and(u8::is_ascii_uppercase) {
                    *pos += 1;
                }
                match &src[start..*pos] {
                    b"UTC" | b"GMT" | b"Z" => {}
                    other => {
                        return Err(format!(
                            "cannot parse time zone {:?} (only UTC and GMT are known)",
                            String::from_utf8_lossy(other)
                        ))
                    }
                }
            }
            b't' | b'n' => {
                let start = *pos;
                while src
                    .get(*pos)
                    .is_some_and(|c| b" \t\n\x0b\x0c\r".contains(c))
                {
                    *pos += 1;
                }
                if *pos == start {
                    return Err(format!("expected a space for \"%{}\"", d as char));
                }
            }
            b'%' => {
                if src.get(*pos) != Some(&b'%') {
                    return Err("expected '%'".into());
                }
                *pos += 1;
            }
            other => return Err(format!("unsupported directive %{}", other as char)),
        }
    }
    Ok(())
}

/// Up to `width` digits, within `min..=max`.
fn number(
    src: &[u8],
    pos: &mut usize,
    width: usize,
    min: i64,
    max: i64,
    d: u8,
) -> Result<i64, String> {
    let start = *pos;
    let mut value: i64 = 0;
    while *pos < src.len() && *pos - start < width && src[*pos].is_ascii_digit() {
        value = value
            .saturating_mul(10)
            .saturating_add(i64::from(src[*pos] - b'0'));
        *pos += 1;
    }
    if *pos == start || value < min || value > max {
        return Err(format!("cannot parse \"%{}\"", d as char));
    }
    Ok(value)
}

/// The 1-based position of the first candidate that `src` starts with (ASCII case-insensitive).
fn word(src: &[u8], pos: &mut usize, candidates: &[&str], d: u8) -> Result<i64, String> {
    for (i, candidate) in candidates.iter().enumerate() {
        let c = candidate.as_bytes();
        if src.len() >= *pos + c.len() && src[*pos..*pos + c.len()].eq_ignore_ascii_case(c) {
            *pos += c.len();
            return Ok(i as i64 + 1);
        }
    }
    Err(format!("cannot parse \"%{}\"", d as char))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_and_go_normalisation() {
        assert_eq!(unix_days(1970, 1, 1), 0);
        assert_eq!(unix_days(2000, 3, 1), 11_017);
        // Month 13 is January of the next year; day 0 is the last of the month before.
        assert_eq!(unix_days(2023, 13, 1), unix_days(2024, 1, 1));
        assert_eq!(unix_days(2024, 3, 0), unix_days(2024, 2, 29));
        assert_eq!(unix_days(2024, 0, 1), unix_days(2023, 12, 1));
    }

    #[test]
    fn date_and_time_octets() {
        // 2024-02-29 13:14:15.6 UTC
        let utc = [0x07, 0xe8, 2, 29, 13, 14, 15, 6];
        assert_eq!(date_and_time(&utc), Ok(1_709_212_455.0));
        // Same wall time at +02:00 is two hours earlier in UTC.
        let plus_two = [0x07, 0xe8, 2, 29, 13, 14, 15, 6, b'+', 2, 0];
        assert_eq!(date_and_time(&plus_two), Ok(1_709_212_455.0 - 7200.0));
        let minus = [0x07, 0xe8, 2, 29, 13, 14, 15, 6, b'-', 5, 30];
        assert_eq!(date_and_time(&minus), Ok(1_709_212_455.0 + 19_800.0));
        assert!(date_and_time(&[1, 2, 3]).is_err());
        assert!(date_and_time(&[0x07, 0xe8, 2, 29, 13, 14, 15, 6, b'x', 2, 0]).is_err());
        assert!(date_and_time(&[0x07, 0xe8, 2, 29, 13, 14, 15, 6, b'+', 25, 0]).is_err());
        // Deci-seconds past 9 carry into seconds, as Go's nanosecond field does.
        assert_eq!(
            date_and_time(&[0x07, 0xe8, 2, 29, 13, 14, 15, 25]),
            Ok(1_709_212_457.0)
        );
    }

    #[test]
    fn ntp_timestamps() {
        let octets = 3_913_056_000u32.to_be_bytes();
        assert_eq!(
            ntp_timestamp(&[octets[0], octets[1], octets[2], octets[3], 0, 0, 0, 0]),
            Ok(1_704_067_200.0)
        );
        assert!(ntp_timestamp(&[0; 4]).is_err());
    }

    #[test]
    fn patterns() {
        assert_eq!(
            parse_with_pattern("Jan 02 2024", "%b %d %Y"),
            Ok(1_704_153_600.0)
        );
        assert_eq!(
            parse_with_pattern("Tue Jan 02 03:04:05 2024", "%a %b %d %H:%M:%S %Y"),
            Ok(1_704_153_600.0 + 3.0 * 3600.0 + 245.0)
        );
        assert_eq!(
            parse_with_pattern("2024-01-02T03:04:05+0100", "%Y-%m-%dT%H:%M:%S%z"),
            Ok(1_704_153_600.0 + 2.0 * 3600.0 + 245.0)
        );
        assert_eq!(parse_with_pattern("02/01/24", "%D"), Ok(1_706_745_600.0));
        assert!(parse_with_pattern("Jan 02 2024 extra", "%b %d %Y").is_err());
        assert!(parse_with_pattern("Foo 02 2024", "%b %d %Y").is_err());
        assert!(check_pattern("%b %d %Y").is_ok());
        assert!(check_pattern("%Q").is_err());
        assert!(check_pattern("%").is_err());
    }
}
