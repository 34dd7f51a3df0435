//! This process's memory, as the kernel counts it (`/proc/self/status`).

/// Resident set now and its peak so far, in bytes; `None` where `/proc` is absent.
pub struct Rss {
    pub now: u64,
    pub peak: u64,
}

pub fn rss() -> Option<Rss> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = |key: &str| -> Option<u64> {
        let line = s.lines().find(|l| l.starts_with(key))?;
        line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()
            .map(|k| k * 1024)
    };
    Some(Rss {
        now: kib("VmRSS:")?,
        peak: kib("VmHWM:")?,
    })
}
