//! Durations on the command line (`--plan-ttl 24h`): Go/Terraform style (`90s`, `30m`,
//! `1h30m`), days (`7d`, counted as 24 hours), or ISO 8601 (`PT1H`). Always positive.

/// Parses a positive duration; the error names the accepted forms.
pub fn parse_duration(text: &str) -> Result<jiff::SignedDuration, String> {
    let trimmed = text.trim();
    let parsed = trimmed.parse::<jiff::SignedDuration>().or_else(|_| {
        // Days and weeks are calendar units to jiff; here a day is 24 hours.
        trimmed
            .parse::<jiff::Span>()
            .map_err(|error| error.to_string())
            .and_then(|span| {
                span.to_duration(jiff::SpanRelativeTo::days_are_24_hours())
                    .map_err(|error| error.to_string())
            })
    });
    match parsed {
        Ok(duration) if duration.is_positive() => Ok(duration),
        Ok(_) => Err(format!("`{text}` is not a positive duration")),
        Err(_) => Err(format!(
            "`{text}` is not a duration: write e.g. `90s`, `30m`, `1h30m`, `24h` or `7d`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_days_and_iso_durations_parse() {
        let hours = |h: i64| jiff::SignedDuration::from_hours(h);
        assert_eq!(parse_duration("24h"), Ok(hours(24)));
        assert_eq!(parse_duration("1s"), Ok(jiff::SignedDuration::from_secs(1)));
        assert_eq!(
            parse_duration("1h30m"),
            Ok(jiff::SignedDuration::from_mins(90))
        );
        assert_eq!(parse_duration("7d"), Ok(hours(7 * 24)));
        assert_eq!(parse_duration("PT2H"), Ok(hours(2)));
    }

    #[test]
    fn zero_negative_and_garbage_are_refused() {
        assert!(parse_duration("0s").unwrap_err().contains("positive"));
        assert!(parse_duration("-1h").is_err());
        assert!(parse_duration("10").unwrap_err().contains("e.g. `90s`"));
        assert!(parse_duration("soon").is_err());
    }
}
