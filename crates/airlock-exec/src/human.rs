//! Sizes and durations as a person reads them, the same in the terminal and
//! on the page.

use std::time::Duration;

/// `1.5 GB`, `320 MB`, `12 kB`, `800 B`.
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.0} kB", b / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.0} MB", b / 1_048_576.0),
        _ => format!("{:.1} GB", b / 1_073_741_824.0),
    }
}

/// A measured duration: `850 ms`, `4.2 s`, `12 s`, `4 min 10 s`, `2 h 5 min`
/// (tenths of a second only under ten seconds, where they tell runs apart).
pub fn human_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{} ms", d.as_millis());
    }
    if d < Duration::from_secs(10) {
        return format!("{:.1} s", d.as_secs_f64());
    }
    let s = d.as_secs_f64().round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// An estimate in seconds: `under 1 s`, `~12 s`, `~4 min 10 s` (whole
/// seconds: an estimate has no tenths to offer).
pub fn human_estimate(seconds: f64) -> String {
    if seconds.is_nan() || seconds < 1.0 {
        return "under 1 s".to_owned();
    }
    let whole = seconds.round().min(1e12);
    if whole < 60.0 {
        return format!("~{whole} s");
    }
    format!("~{}", human_duration(Duration::from_secs_f64(whole)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_says_them() {
        let d = Duration::from_secs_f64;
        assert_eq!(human_duration(d(0.25)), "250 ms");
        assert_eq!(human_duration(d(4.24)), "4.2 s");
        assert_eq!(human_duration(d(12.4)), "12 s");
        assert_eq!(human_duration(d(250.0)), "4 min 10 s");
        assert_eq!(human_duration(d(7500.0)), "2 h 5 min");
        assert_eq!(human_estimate(0.4), "under 1 s");
        assert_eq!(human_estimate(3.6), "~4 s");
        assert_eq!(human_estimate(250.2), "~4 min 10 s");
        assert_eq!(human_estimate(f64::NAN), "under 1 s");
    }

    #[test]
    fn sizes_read_like_a_person_says_them() {
        assert_eq!(human_bytes(800), "800 B");
        assert_eq!(human_bytes(12 * 1024), "12 kB");
        assert_eq!(human_bytes(3 << 30), "3.0 GB");
    }
}
