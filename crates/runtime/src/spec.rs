//! What the front process (`moat do`) tells the kernel process it starts: everything of
//! [`moat_kernel::SandboxConfig`] that is data (the fds travel apart), in a small binary
//! encoding sent down a pipe. The front is trusted, but the decoder still checks every length.

use moat_abi::Rlimit;
use std::net::IpAddr;

use moat_kernel::net::iface::{Iface, IfaceAddr, IfaceStats};
use moat_kernel::{
    AuxFacts, Credentials, InterfaceConfig, NetworkMode, SeedFile, TmpfsMount, Volume, RLIMIT_COUNT,
};

use crate::RuntimeError;

/// The kernel process's instructions.
#[derive(Debug)]
pub struct KernelSpec {
    pub platform: String,
    pub filename: Vec<u8>,
    pub argv: Vec<Vec<u8>>,
    pub envp: Vec<Vec<u8>>,
    pub cwd: Vec<u8>,
    pub cwd_required: bool,
    pub volumes: Vec<Volume>,
    /// The root mounted read-only (OCI `root.readonly`).
    pub root_read_only: bool,
    pub tmpfs_mounts: Vec<TmpfsMount>,
    pub seed_files: Vec<SeedFile>,
    /// Look `filename` up in the sandbox's `PATH` when it has no '/'.
    pub search_path: bool,
    /// Start the program with NO_NEW_PRIVS (OCI `process.noNewPrivileges`).
    pub no_new_privs: bool,
    pub creds: Credentials,
    pub umask: u32,
    pub limits: [Rlimit; RLIMIT_COUNT],
    pub hostname: String,
    pub aux: AuxFacts,
    pub strace: bool,
    pub memory_size: u64,
    /// The sandbox's memory limit in bytes (`u64::MAX`: none of its own).
    pub memory_limit: u64,
    pub cpu_mask: Vec<u8>,
    /// How the kernel process confines itself.
    pub confinement: Confinement,
    /// Write the debug log (to the fd the front opened) rather than errors on stderr.
    pub debug_log: bool,
    /// Test hook: once confined, make a host system call the allowlist refuses. Set only by
    /// the front (from its own environment, see `launch`), never by anything in the sandbox.
    pub probe_seccomp: bool,
    /// Confine, connect to the gofer, then wait for a start message on the control socket
    /// before loading the program (OCI `create`, then `start`).
    pub wait_for_start: bool,
    /// Whose network the sandbox's TCP and UDP sockets use. `Host` also keeps the kernel
    /// process in the host's network namespace and adds the host-network section to its
    /// seccomp allowlist.
    pub network: NetworkMode,
    /// The external interface the sandbox took (`--network=sandbox`); its packet socket
    /// travels at `launch::KERNEL_NET_FD`.
    pub interface: Option<InterfaceConfig>,
    /// With `--network=host`: the host's interfaces, which programs see instead of the
    /// sandbox's `lo` (`network::host_interfaces`).
    pub host_interfaces: Vec<Iface>,
    /// OCI `startContainer` hooks: run in the sandbox, in order, before the program.
    pub start_hooks: Vec<StartHook>,
    /// The container's state JSON, the hooks' stdin.
    pub hook_state: Vec<u8>,
}

/// An OCI hook run inside the sandbox (`startContainer`): a program of the container's tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartHook {
    pub path: Vec<u8>,
    pub args: Vec<Vec<u8>>,
    pub env: Vec<Vec<u8>>,
    /// Seconds it may run (0: no limit).
    pub timeout: u64,
}

/// How much of the confinement applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confinement {
    /// Namespaces, an empty root, no capabilities, NO_NEW_PRIVS, the seccomp allowlist.
    Full,
    /// As `Full`, but calls outside the allowlist are only logged by the host (`--seccomp-log`).
    LogSeccomp,
    /// Nothing (`--no-confine`, for debugging Moat itself).
    None,
}

pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.u64(v.len() as u64);
        self.0.extend_from_slice(v);
    }
    pub(crate) fn creds(&mut self, c: &Credentials) {
        for id in [
            c.uid, c.euid, c.suid, c.gid, c.egid, c.sgid, c.fsuid, c.fsgid,
        ] {
            self.u32(id);
        }
        self.u64(c.groups.len() as u64);
        for &g in &c.groups {
            self.u32(g);
        }
        let caps = &c.caps;
        for set in [
            caps.effective,
            caps.permitted,
            caps.inheritable,
            caps.bounding,
            caps.ambient,
        ] {
            self.u64(set);
        }
        self.u32(c.securebits);
    }
    pub(crate) fn ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => {
                self.0.push(4);
                self.0.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                self.0.push(6);
                self.0.extend_from_slice(&a.octets());
            }
        }
    }
    pub(crate) fn list(&mut self, v: &[Vec<u8>]) {
        self.u64(v.len() as u64);
        for item in v {
            self.bytes(item);
        }
    }
}

pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl Reader<'_> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&[u8], RuntimeError> {
        if self.0.len() < n {
            return Err(RuntimeError::Spec("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    pub(crate) fn u64(&mut self) -> Result<u64, RuntimeError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, RuntimeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
    pub(crate) fn bool(&mut self) -> Result<bool, RuntimeError> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(RuntimeError::Spec("bad boolean")),
        }
    }
    pub(crate) fn len(&mut self) -> Result<usize, RuntimeError> {
        let n = usize::try_from(self.u64()?).map_err(|_| RuntimeError::Spec("bad length"))?;
        // Every element takes at least one byte: a length past what is left is a lie.
        if n > self.0.len() {
            return Err(RuntimeError::Spec("bad length"));
        }
        Ok(n)
    }
    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>, RuntimeError> {
        let n = self.len()?;
        Ok(self.take(n)?.to_vec())
    }
    pub(crate) fn string(&mut self) -> Result<String, RuntimeError> {
        String::from_utf8(self.bytes()?).map_err(|_| RuntimeError::Spec("bad string"))
    }
    pub(crate) fn creds(&mut self) -> Result<Credentials, RuntimeError> {
        let mut ids = [0u32; 8];
        for id in &mut ids {
            *id = self.u32()?;
        }
        let n = self.len()?;
        let groups = (0..n).map(|_| self.u32()).collect::<Result<_, _>>()?;
        let caps = moat_kernel::capability::CapSets {
            effective: self.u64()?,
            permitted: self.u64()?,
            inheritable: self.u64()?,
            bounding: self.u64()?,
            ambient: self.u64()?,
        };
        let securebits = self.u32()?;
        Ok(Credentials {
            uid: ids[0],
            euid: ids[1],
            suid: ids[2],
            gid: ids[3],
            egid: ids[4],
            sgid: ids[5],
            fsuid: ids[6],
            fsgid: ids[7],
            groups,
            caps,
            securebits,
        })
    }
    pub(crate) fn ip(&mut self) -> Result<IpAddr, RuntimeError> {
        match self.take(1)?[0] {
            4 => {
                let b: [u8; 4] = self.take(4)?.try_into().expect("4 bytes");
                Ok(IpAddr::from(b))
            }
            6 => {
                let b: [u8; 16] = self.take(16)?.try_into().expect("16 bytes");
                Ok(IpAddr::from(b))
            }
            _ => Err(RuntimeError::Spec("bad address")),
        }
    }
    pub(crate) fn list(&mut self) -> Result<Vec<Vec<u8>>, RuntimeError> {
        let n = self.len()?;
        (0..n).map(|_| self.bytes()).collect()
    }
}

impl KernelSpec {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        w.bytes(self.platform.as_bytes());
        w.bytes(&self.filename);
        w.list(&self.argv);
        w.list(&self.envp);
        w.bytes(&self.cwd);
        w.bool(self.cwd_required);
        w.u64(self.volumes.len() as u64);
        for v in &self.volumes {
            w.bytes(&v.path);
            w.u64(v.mount);
            w.bool(v.read_only);
        }
        w.bool(self.root_read_only);
        w.u64(self.tmpfs_mounts.len() as u64);
        for t in &self.tmpfs_mounts {
            w.bytes(&t.path);
            w.u32(t.mode);
            w.bool(t.read_only);
        }
        w.u64(self.seed_files.len() as u64);
        for f in &self.seed_files {
            w.bytes(&f.path);
            w.bytes(&f.contents);
            w.u32(f.mode);
        }
        w.bool(self.search_path);
        w.bool(self.no_new_privs);
        w.creds(&self.creds);
        w.u32(self.umask);
        for l in &self.limits {
            w.u64(l.cur);
            w.u64(l.max);
        }
        w.bytes(self.hostname.as_bytes());
        let a = &self.aux;
        for v in [a.hwcap, a.hwcap2, a.minsigstksz] {
            w.u64(v);
        }
        for id in [a.uid, a.euid, a.gid, a.egid] {
            w.u32(id);
        }
        w.bool(self.strace);
        w.u64(self.memory_size);
        w.u64(self.memory_limit);
        w.bytes(&self.cpu_mask);
        w.0.push(match self.confinement {
            Confinement::Full => 0,
            Confinement::LogSeccomp => 1,
            Confinement::None => 2,
        });
        w.bool(self.debug_log);
        w.bool(self.probe_seccomp);
        w.bool(self.wait_for_start);
        w.0.push(match self.network {
            NetworkMode::Sandbox => 0,
            NetworkMode::None => 1,
            NetworkMode::Host => 2,
        });
        w.bool(self.interface.is_some());
        if let Some(n) = &self.interface {
            w.bytes(n.name.as_bytes());
            w.0.extend_from_slice(&n.mac);
            w.u32(n.mtu);
            w.u64(n.addrs.len() as u64);
            for (ip, prefix) in &n.addrs {
                w.ip(*ip);
                w.0.push(*prefix);
            }
            for gw in [n.gateway, n.gateway6] {
                w.bool(gw.is_some());
                if let Some(gw) = gw {
                    w.ip(gw);
                }
            }
        }
        w.u64(self.host_interfaces.len() as u64);
        for d in &self.host_interfaces {
            w.u32(d.index as u32);
            w.bytes(d.name.as_bytes());
            w.u32(d.flags);
            w.u32(u32::from(d.hw_type));
            w.u32(d.mtu);
            w.0.extend_from_slice(&d.mac);
            w.u64(d.addrs.len() as u64);
            for a in &d.addrs {
                w.ip(a.addr);
                w.0.extend_from_slice(&[a.prefix, a.scope]);
            }
            for gw in [d.gateway, d.gateway6] {
                w.bool(gw.is_some());
                if let Some(gw) = gw {
                    w.ip(gw);
                }
            }
        }
        w.u64(self.start_hooks.len() as u64);
        for h in &self.start_hooks {
            w.bytes(&h.path);
            w.list(&h.args);
            w.list(&h.env);
            w.u64(h.timeout);
        }
        w.bytes(&self.hook_state);
        w.0
    }

    pub fn decode(bytes: &[u8]) -> Result<KernelSpec, RuntimeError> {
        let mut r = Reader(bytes);
        let platform = r.string()?;
        let filename = r.bytes()?;
        let argv = r.list()?;
        let envp = r.list()?;
        let cwd = r.bytes()?;
        let cwd_required = r.bool()?;
        let n = r.len()?;
        let mut volumes = Vec::with_capacity(n);
        for _ in 0..n {
            volumes.push(Volume {
                path: r.bytes()?,
                mount: r.u64()?,
                read_only: r.bool()?,
            });
        }
        let root_read_only = r.bool()?;
        let n = r.len()?;
        let mut tmpfs_mounts = Vec::with_capacity(n);
        for _ in 0..n {
            tmpfs_mounts.push(TmpfsMount {
                path: r.bytes()?,
                mode: r.u32()?,
                read_only: r.bool()?,
            });
        }
        let n = r.len()?;
        let mut seed_files = Vec::with_capacity(n);
        for _ in 0..n {
            seed_files.push(SeedFile {
                path: r.bytes()?,
                contents: r.bytes()?,
                mode: r.u32()?,
            });
        }
        let search_path = r.bool()?;
        let no_new_privs = r.bool()?;
        let creds = r.creds()?;
        let umask = r.u32()?;
        let mut limits = [Rlimit::default(); RLIMIT_COUNT];
        for l in &mut limits {
            l.cur = r.u64()?;
            l.max = r.u64()?;
        }
        let hostname = r.string()?;
        let aux = AuxFacts {
            hwcap: r.u64()?,
            hwcap2: r.u64()?,
            minsigstksz: r.u64()?,
            uid: r.u32()?,
            euid: r.u32()?,
            gid: r.u32()?,
            egid: r.u32()?,
        };
        let strace = r.bool()?;
        let memory_size = r.u64()?;
        let memory_limit = r.u64()?;
        let cpu_mask = r.bytes()?;
        let confinement = match r.take(1)?[0] {
            0 => Confinement::Full,
            1 => Confinement::LogSeccomp,
            2 => Confinement::None,
            _ => return Err(RuntimeError::Spec("bad confinement")),
        };
        let debug_log = r.bool()?;
        let probe_seccomp = r.bool()?;
        let wait_for_start = r.bool()?;
        let network = match r.take(1)?[0] {
            0 => NetworkMode::Sandbox,
            1 => NetworkMode::None,
            2 => NetworkMode::Host,
            _ => return Err(RuntimeError::Spec("bad network mode")),
        };
        let interface = if r.bool()? {
            let name = r.string()?;
            let mut mac = [0u8; 6];
            mac.copy_from_slice(r.take(6)?);
            let mtu = r.u32()?;
            let n = r.len()?;
            let mut addrs = Vec::with_capacity(n);
            for _ in 0..n {
                addrs.push((r.ip()?, r.take(1)?[0]));
            }
            let gateway = if r.bool()? { Some(r.ip()?) } else { None };
            let gateway6 = if r.bool()? { Some(r.ip()?) } else { None };
            Some(InterfaceConfig {
                name,
                mac,
                mtu,
                addrs,
                gateway,
                gateway6,
            })
        } else {
            None
        };
        let n = r.len()?;
        let mut host_interfaces = Vec::with_capacity(n.min(256));
        for _ in 0..n {
            let index = r.u32()? as i32;
            let name = r.string()?;
            let flags = r.u32()?;
            let hw_type =
                u16::try_from(r.u32()?).map_err(|_| RuntimeError::Spec("bad hardware type"))?;
            let mtu = r.u32()?;
            let mut mac = [0u8; 6];
            mac.copy_from_slice(r.take(6)?);
            let count = r.len()?;
            let mut addrs = Vec::with_capacity(count.min(256));
            for _ in 0..count {
                let addr = r.ip()?;
                let ps = r.take(2)?;
                addrs.push(IfaceAddr {
                    addr,
                    prefix: ps[0],
                    scope: ps[1],
                });
            }
            let gateway = if r.bool()? { Some(r.ip()?) } else { None };
            let gateway6 = if r.bool()? { Some(r.ip()?) } else { None };
            host_interfaces.push(Iface {
                index,
                name,
                flags,
                hw_type,
                mtu,
                mac,
                addrs,
                gateway,
                gateway6,
                stats: IfaceStats::default(),
            });
        }
        let n = r.len()?;
        let mut start_hooks = Vec::with_capacity(n);
        for _ in 0..n {
            start_hooks.push(StartHook {
                path: r.bytes()?,
                args: r.list()?,
                env: r.list()?,
                timeout: r.u64()?,
            });
        }
        let hook_state = r.bytes()?;
        if !r.0.is_empty() {
            return Err(RuntimeError::Spec("trailing bytes"));
        }
        Ok(KernelSpec {
            platform,
            filename,
            argv,
            envp,
            cwd,
            cwd_required,
            volumes,
            root_read_only,
            tmpfs_mounts,
            seed_files,
            search_path,
            no_new_privs,
            creds,
            umask,
            limits,
            hostname,
            aux,
            strace,
            memory_size,
            memory_limit,
            cpu_mask,
            confinement,
            debug_log,
            probe_seccomp,
            wait_for_start,
            network,
            interface,
            host_interfaces,
            start_hooks,
            hook_state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> KernelSpec {
        KernelSpec {
            platform: "ptrace".into(),
            filename: b"/bin/true".to_vec(),
            argv: vec![b"true".to_vec(), vec![0xff, 0]],
            envp: vec![b"A=B".to_vec()],
            cwd: b"/".to_vec(),
            cwd_required: true,
            volumes: vec![Volume {
                path: b"/work".to_vec(),
                mount: 1,
                read_only: true,
            }],
            root_read_only: true,
            tmpfs_mounts: vec![TmpfsMount {
                path: b"/run".to_vec(),
                mode: 0o755,
                read_only: false,
            }],
            seed_files: vec![SeedFile {
                path: b"/etc/hosts".to_vec(),
                contents: b"127.0.0.1 localhost\n".to_vec(),
                mode: 0o644,
            }],
            search_path: true,
            no_new_privs: true,
            creds: Credentials {
                uid: 1,
                euid: 2,
                suid: 3,
                gid: 4,
                egid: 5,
                sgid: 6,
                fsuid: 7,
                fsgid: 8,
                groups: vec![9, 10],
                caps: moat_kernel::capability::CapSets {
                    effective: 1,
                    permitted: 3,
                    inheritable: 2,
                    bounding: 7,
                    ambient: 2,
                },
                securebits: 0x10,
            },
            umask: 0o22,
            limits: [Rlimit { cur: 11, max: 12 }; RLIMIT_COUNT],
            hostname: "host".into(),
            aux: AuxFacts {
                hwcap: 13,
                hwcap2: 14,
                minsigstksz: 15,
                uid: 16,
                euid: 17,
                gid: 18,
                egid: 19,
            },
            strace: true,
            memory_size: 1 << 30,
            memory_limit: 1 << 28,
            cpu_mask: vec![3],
            confinement: Confinement::LogSeccomp,
            debug_log: true,
            probe_seccomp: false,
            wait_for_start: true,
            network: NetworkMode::Host,
            start_hooks: vec![StartHook {
                path: b"/hook".to_vec(),
                args: vec![b"hook".to_vec(), b"x".to_vec()],
                env: vec![b"A=1".to_vec()],
                timeout: 5,
            }],
            hook_state: b"{}".to_vec(),
            interface: Some(InterfaceConfig {
                name: "eth0".into(),
                mac: [2, 0, 0, 0, 0, 1],
                mtu: 1500,
                addrs: vec![
                    ("10.0.0.2".parse().unwrap(), 24),
                    ("fd00::2".parse().unwrap(), 64),
                ],
                gateway: Some("10.0.0.1".parse().unwrap()),
                gateway6: Some("fd00::1".parse().unwrap()),
            }),
            host_interfaces: vec![Iface {
                index: 3,
                name: "eth1".into(),
                flags: 0x1_1043,
                hw_type: 1,
                mtu: 9000,
                mac: [2, 0, 0, 0, 0, 3],
                addrs: vec![IfaceAddr {
                    addr: "fe80::3".parse().unwrap(),
                    prefix: 64,
                    scope: 253,
                }],
                gateway: Some("192.168.1.1".parse().unwrap()),
                gateway6: None,
                stats: IfaceStats::default(),
            }],
        }
    }

    #[test]
    fn a_spec_survives_the_trip() {
        let spec = sample();
        let bytes = spec.encode();
        let back = KernelSpec::decode(&bytes).unwrap();
        assert_eq!(format!("{spec:?}"), format!("{back:?}"));
    }

    #[test]
    fn truncated_or_padded_specs_are_errors() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(KernelSpec::decode(&bytes[..n]).is_err(), "{n}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(KernelSpec::decode(&long).is_err());
        let mut huge = bytes;
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(KernelSpec::decode(&huge).is_err());
    }
}
