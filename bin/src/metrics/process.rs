//! The process's own metrics under the names every Prometheus client uses
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...),
//! read from `/proc/self` at each scrape; `prometheus-client` has no
//! process collector of its own. Where `/proc` cannot be read (not Linux),
//! the metric is left out rather than reported wrong.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// The kernel's `USER_HZ`: the unit of `/proc/*/stat`'s CPU and start
/// times, 100 on every Linux architecture (the ABI fixes it, whatever the
/// kernel's own tick rate).
const USER_HZ: f64 = 100.0;

/// Writes the `process_*` metrics.
#[derive(Debug, Default)]
pub(crate) struct ProcessCollector;

/// What `/proc/self` says, each figure `None` where it could not be read.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ProcessFigures {
    pub(crate) cpu_seconds: Option<f64>,
    pub(crate) resident_bytes: Option<i64>,
    pub(crate) virtual_bytes: Option<i64>,
    pub(crate) open_fds: Option<i64>,
    pub(crate) max_fds: Option<i64>,
    pub(crate) start_time_seconds: Option<f64>,
    pub(crate) threads: Option<i64>,
}

impl ProcessFigures {
    fn read() -> Self {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())
        });
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .and_then(|d| i64::try_from(d.count()).ok());
        Self {
            open_fds,
            ..Self::parse(&stat, &status, &limits, boot)
        }
    }

    /// The figures in `/proc/self/stat`, `status` and `limits`, the boot
    /// time (`/proc/stat`'s `btime`) given.
    pub(crate) fn parse(stat: &str, status: &str, limits: &str, boot: Option<f64>) -> Self {
        // The command name (field 2) is in parentheses and may hold spaces:
        // the fields that follow it are counted from its closing one.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        // Field n of stat(5) is fields[n - 3] here.
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        let cpu_seconds = field(14)
            .zip(field(15))
            .map(|(user, system)| (user + system) as f64 / USER_HZ);
        let start_time_seconds = field(22)
            .zip(boot)
            .map(|(ticks, boot)| boot + ticks as f64 / USER_HZ);
        let kib = |name: &str| {
            status.lines().find_map(|l| {
                let value = l.strip_prefix(name)?.trim().strip_suffix("kB")?;
                value.trim().parse::<i64>().ok().map(|k| k * 1024)
            })
        };
        let threads = status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:")?.trim().parse().ok());
        let max_fds = limits.lines().find_map(|l| {
            let rest = l.strip_prefix("Max open files")?;
            rest.split_whitespace().next()?.parse().ok()
        });
        Self {
            cpu_seconds,
            resident_bytes: kib("VmRSS:"),
            virtual_bytes: kib("VmSize:"),
            open_fds: None,
            max_fds,
            start_time_seconds,
            threads,
        }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let p = ProcessFigures::read();
        if let Some(cpu) = p.cpu_seconds {
            encoder
                .encode_descriptor(
                    "process_cpu",
                    "User and system CPU time spent.",
                    Some(&Unit::Seconds),
                    MetricType::Counter,
                )
                .and_then(|m| ConstCounter::new(cpu).encode(m))?;
        }
        let gauges: [(&str, &str, Option<&Unit>, Option<i64>); 5] = [
            (
                "process_resident_memory",
                "Resident memory size.",
                Some(&Unit::Bytes),
                p.resident_bytes,
            ),
            (
                "process_virtual_memory",
                "Virtual memory size.",
                Some(&Unit::Bytes),
                p.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Open file descriptors.",
                None,
                p.open_fds,
            ),
            (
                "process_max_fds",
                "The most file descriptors the process may open.",
                None,
                p.max_fds,
            ),
            ("process_threads", "Threads.", None, p.threads),
        ];
        for (name, help, unit, value) in gauges {
            if let Some(value) = value {
                encoder
                    .encode_descriptor(name, help, unit, MetricType::Gauge)
                    .and_then(|m| ConstGauge::new(value).encode(m))?;
            }
        }
        if let Some(start) = p.start_time_seconds {
            encoder
                .encode_descriptor(
                    "process_start_time",
                    "When the process started, in seconds since the Unix epoch.",
                    Some(&Unit::Seconds),
                    MetricType::Gauge,
                )
                .and_then(|m| ConstGauge::new(start).encode(m))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_figures_are_read_past_a_command_name_with_spaces_and_parentheses() {
        // stat(5): pid (comm) state ppid ... utime(14) stime(15) ... starttime(22)
        let stat = "4242 (echo (x) server) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 7 0 12345 1000 200";
        let status = "Name:\techo-server\nVmSize:\t  20480 kB\nVmRSS:\t    5120 kB\nThreads:\t7\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        let figures = ProcessFigures::parse(stat, status, limits, Some(1_700_000_000.0));
        assert_eq!(
            figures,
            ProcessFigures {
                cpu_seconds: Some(3.0),
                resident_bytes: Some(5120 * 1024),
                virtual_bytes: Some(20480 * 1024),
                open_fds: None,
                max_fds: Some(1024),
                start_time_seconds: Some(1_700_000_000.0 + 123.45),
                threads: Some(7),
            }
        );
    }

    #[test]
    fn unreadable_proc_files_leave_the_figures_out() {
        assert_eq!(
            ProcessFigures::parse("", "", "", None),
            ProcessFigures::default()
        );
    }
}
