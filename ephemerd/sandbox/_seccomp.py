"""The default seccomp profile: allow everything except what a CI job has no use for.

A deny list keeps CI tooling working (compilers, package managers and test runners use
a long tail of syscalls) while closing the kernel interfaces that matter for escaping or
for attacking the host: kernel keyrings, module and kexec loading, BPF, perf, mounts and
namespace creation (user namespaces above all, since they hand out fresh capabilities),
ptrace and cross-process memory access, the clock, swap, reboot and io_uring. Denied
calls fail with EPERM; ``clone3`` fails with ENOSYS so libc falls back to ``clone``,
whose namespace flags are then checked.
"""

from __future__ import annotations

__all__ = ["DENIED_SYSCALLS", "default_seccomp"]

DENIED_SYSCALLS: tuple[str, ...] = (
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "clock_settime64",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "syslog",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
)

_EPERM = 1
_ENOSYS = 38
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET (linux/sched.h)
_CLONE_NAMESPACE_FLAGS = (
    0x00020000,
    0x02000000,
    0x04000000,
    0x08000000,
    0x10000000,
    0x20000000,
    0x40000000,
)


def default_seccomp() -> dict[str, object]:
    """The profile as the OCI runtime spec's ``linux.seccomp`` object (x86-64 hosts)."""
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": list(DENIED_SYSCALLS), "action": "SCMP_ACT_ERRNO", "errnoRet": _EPERM},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": _ENOSYS},
            # clone(flags, ...) with any namespace flag set: one rule per flag, ORed
            *(
                {
                    "names": ["clone"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": _EPERM,
                    "args": [
                        {"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}
                    ],
                }
                for flag in _CLONE_NAMESPACE_FLAGS
            ),
        ],
    }
