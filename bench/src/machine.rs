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
/// that cannot be read is left out, with its separator, and a load average that
/// cannot be read is `unknown`; without `/sys/devices/system/cpu/cpuidle` it says
/// `no cpuidle driver`.
pub fn describe() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let cpu = CpuInfo::current().ok();
    let field = |name: &str| cpu.as_ref().and_then(|c| c.get_field(0, name));
    let family_model = field("cpu family").zip(field("model"));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok();
    let idle = cpuidle(
        std::fs::read_to_string(CPUIDLE_DRIVER).ok().as_deref(),
        std::fs::read_to_string(HALTPOLL_NS).ok().as_deref(),
    );
    let load = LoadAverage::current().map_or_else(
        |_| "unknown".to_owned(),
        |l| format!("{:.2} {:.2} {:.2}", l.one, l.five, l.fifteen),
    );
    label(
        cpus,
        field("model name"),
        family_model,
        kernel.as_deref(),
        &idle,
        &load,
    )
}

/// The label from its parts: `{cpus} vCPU {name} (family {f} model {m}), Linux
/// {kernel}, {idle}, load {load}`. A name or kernel that is missing or blank is
/// left out with its separator, and so is the family and model pair when it is
/// not given.
fn label(
    cpus: usize,
    name: Option<&str>,
    family_model: Option<(&str, &str)>,
    kernel: Option<&str>,
    idle: &str,
    load: &str,
) -> String {
    let mut cpu = format!("{cpus} vCPU");
    if let Some(name) = nonblank(name) {
        cpu.push(' ');
        cpu.push_str(name);
    }
    if let Some((family, model)) = family_model {
        cpu.push_str(&format!(
            " (family {} model {})",
            family.trim(),
            model.trim()
        ));
    }
    let mut parts = vec![cpu];
    if let Some(kernel) = nonblank(kernel) {
        parts.push(format!("Linux {kernel}"));
    }
    parts.push(idle.to_owned());
    parts.push(format!("load {load}"));
    parts.join(", ")
}

/// How idle CPUs wait, from the contents of [`CPUIDLE_DRIVER`] and
/// [`HALTPOLL_NS`]: `cpuidle haltpoll (guest_halt_poll_ns 0)`, `cpuidle
/// intel_idle`, or `no cpuidle driver`. It is part of the label because on a VM
/// every wake-up of a halted vCPU goes through the host: keystroke echo there
/// moves with it more than with anything Corral does (BENCHMARKS.md).
fn cpuidle(driver: Option<&str>, halt_poll_ns: Option<&str>) -> String {
    let driver = nonblank(driver).filter(|d| *d != "none");
    match (driver, nonblank(halt_poll_ns)) {
        (None, _) => "no cpuidle driver".into(),
        (Some("haltpoll"), Some(ns)) => {
            format!("cpuidle haltpoll (guest_halt_poll_ns {ns})")
        }
        (Some(driver), _) => format!("cpuidle {driver}"),
    }
}

/// `text` without surrounding whitespace, or `None` when that leaves nothing (a
/// sysfs or procfs file ends with a newline; an unset field reads as blank).
fn nonblank(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|t| !t.is_empty())
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
    fn leaves_out_what_cannot_be_read() {
        let idle = "cpuidle haltpoll (guest_halt_poll_ns 0)";
        assert_eq!(
            label(
                2,
                Some("AMD EPYC"),
                Some(("25", "17")),
                Some("6.18.44\n"),
                idle,
                "0.72 1.33 0.80"
            ),
            "2 vCPU AMD EPYC (family 25 model 17), Linux 6.18.44, \
             cpuidle haltpoll (guest_halt_poll_ns 0), load 0.72 1.33 0.80"
        );
        assert_eq!(
            label(2, None, Some(("25", "17")), Some(""), idle, "unknown"),
            "2 vCPU (family 25 model 17), cpuidle haltpoll (guest_halt_poll_ns 0), load unknown"
        );
        assert_eq!(
            label(1, Some("  "), None, None, "no cpuidle driver", "unknown"),
            "1 vCPU, no cpuidle driver, load unknown"
        );
    }

    #[test]
    fn describes_this_machine() {
        let line = describe();
        let cpus = std::thread::available_parallelism().map_or(0, usize::from);
        assert!(line.starts_with(&format!("{cpus} vCPU")), "{line}");
        assert!(line.contains(", Linux "), "{line}");
        assert!(line.contains("cpuidle"), "{line}");
        assert!(line.contains(", load "), "{line}");
    }
}
