//! What the figures were measured on: the line a report is labelled with.

use procfs::{CpuInfo, Current as _, LoadAverage};

/// The cpuidle driver's name (`haltpoll`, `intel_idle`, …; `none` or missing when
/// the kernel has none).
const CPUIDLE_DRIVER: &str = "/sys/devices/system/cpu/cpuidle/current_driver";
/// How long an idle vCPU of a KVM guest polls before it halts, in ns, under the
/// `haltpoll` driver (the kernel's `Documentation/virt/guest-halt-polling.rst`).
const HALTPOLL_NS: &str = "/sys/module/haltpoll/parameters/guest_halt_poll_ns";

/// CPUs, CPU model (name, family and model number), kernel, how idle CPUs wait,
/// and the load average at the start, from `/proc` and `/sys`; e.g. `2 vCPU
/// Intel(R) Xeon(R) Processor (family 6 model 207), Linux 6.18.44, cpuidle
/// haltpoll (guest_halt_poll_ns 0), load 0.18 1.29 1.49`. A CPU model or kernel
/// that cannot be read is left out, and a load average that cannot be read is
/// `unknown`; without `/sys/devices/system/cpu/cpuidle` it says `no cpuidle
/// driver`.
pub fn describe() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let cpu = CpuInfo::current().ok();
    let field = |name: &str| cpu.as_ref().and_then(|c| c.get_field(0, name));
    let mut model = field("model name").unwrap_or_default().to_owned();
    if let (Some(family), Some(number)) = (field("cpu family"), field("model")) {
        model.push_str(&format!(" (family {family} model {number})"));
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let idle = cpuidle(
        std::fs::read_to_string(CPUIDLE_DRIVER).ok().as_deref(),
        std::fs::read_to_string(HALTPOLL_NS).ok().as_deref(),
    );
    let load = LoadAverage::current().map_or_else(
        |_| "unknown".to_owned(),
        |l| format!("{:.2} {:.2} {:.2}", l.one, l.five, l.fifteen),
    );
    format!(
        "{cpus} vCPU {model}, Linux {}, {idle}, load {load}",
        kernel.trim()
    )
}

/// How idle CPUs wait, from the contents of [`CPUIDLE_DRIVER`] and
/// [`HALTPOLL_NS`]: `cpuidle haltpoll (guest_halt_poll_ns 0)`, `cpuidle
/// intel_idle`, or `no cpuidle driver`. It is part of the label because on a VM
/// every wake-up of a halted vCPU goes through the host: keystroke echo there
/// moves with it more than with anything Corral does (BENCHMARKS.md).
fn cpuidle(driver: Option<&str>, halt_poll_ns: Option<&str>) -> String {
    let driver = driver
        .map(str::trim)
        .filter(|d| !d.is_empty() && *d != "none");
    match (driver, halt_poll_ns.map(str::trim)) {
        (None, _) => "no cpuidle driver".into(),
        (Some("haltpoll"), Some(ns)) if !ns.is_empty() => {
            format!("cpuidle haltpoll (guest_halt_poll_ns {ns})")
        }
        (Some(driver), _) => format!("cpuidle {driver}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_cpuidle_driver_and_haltpolls_poll_time() {
        assert_eq!(
            cpuidle(Some("haltpoll\n"), Some("0\n")),
            "cpuidle haltpoll (guest_halt_poll_ns 0)"
        );
        assert_eq!(cpuidle(Some("haltpoll\n"), None), "cpuidle haltpoll");
        // The parameter is the haltpoll driver's: another driver ignores it.
        assert_eq!(
            cpuidle(Some("intel_idle\n"), Some("200000\n")),
            "cpuidle intel_idle"
        );
        assert_eq!(cpuidle(Some("none\n"), Some("0\n")), "no cpuidle driver");
        assert_eq!(cpuidle(None, None), "no cpuidle driver");
    }

    #[test]
    fn describes_this_machine() {
        let line = describe();
        let cpus = std::thread::available_parallelism().map_or(0, usize::from);
        assert!(line.starts_with(&format!("{cpus} vCPU ")), "{line}");
        assert!(line.contains(", Linux "), "{line}");
        assert!(line.contains("cpuidle"), "{line}");
        assert!(line.contains(", load "), "{line}");
    }
}
