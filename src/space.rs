//! What removing a container frees, as pure functions: the size of its writable layer
//! (`--measure-space`) and the anonymous volumes that go with it (`--remove-volumes`).
//!
//! The size is Docker's `SizeRw`, the bytes the container wrote into its own layer: an estimate
//! of what its removal frees, since the image's layers, shared with every other container of the
//! image, stay, and volumes are not counted in it.
//!
//! Which volumes are anonymous is decided so that a named volume is never listed: a volume is
//! anonymous only where the engine made it for this container without a name, by the engine's
//! own rule ([`Anonymity`]); anything the rule cannot tell is left out, and a volume another
//! container still uses is left out too, since neither engine removes it then.

use std::collections::HashSet;

use crate::engine::{Anonymity, ContainerInfo};

/// What a container's removal frees (in a dry run, would free), as far as it is known.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Freed {
    /// The size of its writable layer in bytes (`SizeRw`); `None` where it was not measured or
    /// could not be.
    pub size_rw: Option<u64>,
    /// The anonymous volumes removed with it (in a dry run, that would be), by name; `None`
    /// where that is not known.
    pub volumes: Option<Vec<String>>,
}

/// The anonymous volumes of a container, as its inspection and the engine's rule tell them,
/// that no other container uses (`used_elsewhere`), in the order of its mounts; `None` where the
/// rule cannot tell:
///
/// * Docker ([`Anonymity::ByConfiguration`]): a volume at a path that the container's own
///   configuration declares without a name (an image's `VOLUME`, `-v /path`, an unnamed
///   `--mount type=volume`) and does not also mount a named volume at. This is Docker's own rule
///   for `v=true`, which removes a volume unless the container's mount of it names a source. A
///   container that takes volumes from another (`--volumes-from`) is not judged (`None`): a path
///   it declares may hold the other container's volume, named there.
/// * Podman ([`Anonymity::Marked`]): a volume Podman marks `Anonymous`, which is what its own
///   removal goes by.
/// * An engine that marks its volumes but could not say which ([`Anonymity::Unknown`]): `None`.
#[must_use]
pub fn anonymous_volumes(
    info: &ContainerInfo,
    anonymity: &Anonymity,
    used_elsewhere: impl Fn(&str) -> bool,
) -> Option<Vec<String>> {
    let config = &info.volume_config;
    let is_anonymous = |name: &str, destination: &str| match anonymity {
        Anonymity::ByConfiguration => {
            config.unnamed.iter().any(|path| path == destination)
                && !config.named.iter().any(|path| path == destination)
        }
        Anonymity::Marked(names) => names.contains(name),
        Anonymity::Unknown(_) => false,
    };
    match anonymity {
        Anonymity::ByConfiguration if config.volumes_from => return None,
        Anonymity::Unknown(_) => return None,
        Anonymity::ByConfiguration | Anonymity::Marked(_) => {}
    }
    let mut seen = HashSet::new();
    Some(
        info.volumes
            .iter()
            .filter(|mount| is_anonymous(&mount.name, &mount.destination))
            .filter(|mount| !used_elsewhere(&mount.name))
            .filter(|mount| seen.insert(mount.name.as_str()))
            .map(|mount| mount.name.clone())
            .collect(),
    )
}

/// A number of bytes for people, in binary units with one decimal: `512 B`, `3.2 GiB`.
#[must_use]
pub fn for_people(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // Precision is not at stake: one decimal is shown.
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64 / 1024.0;
    let mut unit = UNITS[0];
    for next in &UNITS[1..] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{VolumeConfig, VolumeMount};

    fn mount(name: &str, destination: &str) -> VolumeMount {
        VolumeMount {
            name: name.into(),
            destination: destination.into(),
        }
    }

    /// A container as Docker 20.10 inspects one made with `-v /anon -v named:/named` from an
    /// image that declares `VOLUME /data` and with `--mount type=volume,dst=/m`.
    fn docker_container() -> ContainerInfo {
        ContainerInfo {
            id: "c1".into(),
            volumes: vec![
                mount("a1", "/anon"),
                mount("named", "/named"),
                mount("a2", "/data"),
                mount("a3", "/m"),
            ],
            volume_config: Box::new(VolumeConfig {
                unnamed: vec!["/anon".into(), "/data".into(), "/m".into()],
                named: vec!["/named".into()],
                volumes_from: false,
            }),
            ..ContainerInfo::default()
        }
    }

    #[test]
    fn docker_lists_the_volumes_its_configuration_declares_without_a_name() {
        let info = docker_container();
        assert_eq!(
            anonymous_volumes(&info, &Anonymity::ByConfiguration, |_| false),
            Some(vec!["a1".into(), "a2".into(), "a3".into()])
        );
    }

    #[test]
    fn a_named_volume_over_a_declared_path_is_never_listed() {
        // `-v data:/data` on an image that declares `VOLUME /data`: the path is both.
        let mut info = docker_container();
        info.volumes = vec![mount("data", "/data")];
        info.volume_config.named.push("/data".into());
        assert_eq!(
            anonymous_volumes(&info, &Anonymity::ByConfiguration, |_| false),
            Some(vec![])
        );
    }

    #[test]
    fn a_volume_another_container_uses_is_never_listed() {
        let info = docker_container();
        assert_eq!(
            anonymous_volumes(&info, &Anonymity::ByConfiguration, |name| name == "a2"),
            Some(vec!["a1".into(), "a3".into()])
        );
    }

    #[test]
    fn docker_does_not_judge_a_container_that_takes_volumes_from_another() {
        let mut info = docker_container();
        info.volume_config.volumes_from = true;
        assert_eq!(
            anonymous_volumes(&info, &Anonymity::ByConfiguration, |_| false),
            None
        );
    }

    #[test]
    fn podman_lists_the_volumes_it_marks_and_only_those() {
        // Podman's inspection names every volume in Binds, so the configuration says nothing.
        let info = ContainerInfo {
            volumes: vec![mount("a1", "/anon"), mount("named", "/named")],
            volume_config: Box::new(VolumeConfig {
                named: vec!["/anon".into(), "/named".into()],
                volumes_from: true,
                ..VolumeConfig::default()
            }),
            ..ContainerInfo::default()
        };
        let marked = Anonymity::Marked(["a1".to_owned(), "elsewhere".to_owned()].into());
        assert_eq!(
            anonymous_volumes(&info, &marked, |_| false),
            Some(vec!["a1".into()])
        );
        let unknown = Anonymity::Unknown("no answer within 30s".into());
        assert_eq!(anonymous_volumes(&info, &unknown, |_| false), None);
    }

    #[test]
    fn a_volume_mounted_twice_is_listed_once() {
        let mut info = docker_container();
        info.volumes = vec![mount("a1", "/anon"), mount("a1", "/data")];
        assert_eq!(
            anonymous_volumes(&info, &Anonymity::ByConfiguration, |_| false),
            Some(vec!["a1".into()])
        );
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(for_people(0), "0 B");
        assert_eq!(for_people(1023), "1023 B");
        assert_eq!(for_people(1024), "1.0 KiB");
        assert_eq!(for_people(3_145_728), "3.0 MiB");
        assert_eq!(for_people(3_435_973_837), "3.2 GiB");
        assert_eq!(for_people(u64::MAX), "16.0 EiB");
    }
}
