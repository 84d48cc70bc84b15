//! The daemon's answers to the listing (`GET /containers/json`), the inspection
//! (`GET /containers/{ref}/json`, with `size=true` for `--measure-space`) and Podman's listing of
//! its volumes (`GET /libpod/volumes/json`), read into types of rt-cleanup's own.
//!
//! Why not bollard's models: they reject a value they do not know, and one such value anywhere
//! in an answer fails the whole answer (Podman's `"State": "stopped"` failed every listing that
//! held one container in that state). Here only the fields rt-cleanup uses are read, every one of
//! them leniently ([`Lenient`]): a field that is missing, null or of another type is read as
//! absent, and every other field is never looked at. The state is kept as the daemon's own
//! word; `ContainerState::of` says what it means.
//!
//! A listed entry without a usable container id (missing, not text, or not a valid reference) is
//! left out of the listing, and logged; an inspection without one is a failed inspection. The
//! id is the one value rt-cleanup sends back to the daemon, in a request path, so it is never
//! guessed.

use std::collections::{HashMap, HashSet};

use serde::de::{DeserializeOwned, Deserializer};
use serde::Deserialize;

use crate::candidate::ContainerRef;
use crate::engine::{ContainerInfo, VolumeConfig, VolumeMount};
use crate::time::parse_rfc3339_ms;

/// A value read where a daemon may send anything: `None` where the answer holds something that
/// is not a `T` (null, another type, an unknown variant), instead of an error that would fail the
/// whole answer.
#[derive(Debug)]
struct Lenient<T>(Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Only JSON that is not well-formed fails here, and that fails the answer anyway.
        let value = serde_json::Value::deserialize(deserializer)?;
        Ok(Self(T::deserialize(value).ok()))
    }
}

impl Lenient<Vec<Lenient<String>>> {
    /// The texts of a list, without the items that are not text.
    fn texts(self) -> impl Iterator<Item = String> {
        self.0.into_iter().flatten().filter_map(|item| item.0)
    }
}

impl Lenient<Vec<Lenient<Mounted>>> {
    /// The volume mounts of a `Mounts` list: those of `Type` `volume` that have a name.
    fn volumes(self) -> Vec<VolumeMount> {
        self.0
            .into_iter()
            .flatten()
            .filter_map(|mount| {
                let mount = mount.0?;
                (mount.kind.0.as_deref() == Some("volume")).then_some(())?;
                Some(VolumeMount {
                    name: mount.name.0.filter(|name| !name.is_empty())?,
                    destination: mount.destination.0.unwrap_or_default(),
                })
            })
            .collect()
    }
}

impl Lenient<HashMap<String, Lenient<String>>> {
    /// The labels whose values are text.
    fn labels(self) -> HashMap<String, String> {
        self.0
            .into_iter()
            .flatten()
            .filter_map(|(key, value)| Some((key, value.0?)))
            .collect()
    }
}

/// The fields of one entry of a listing that rt-cleanup reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Listed {
    #[serde(rename = "Id")]
    id: Lenient<String>,
    #[serde(rename = "Names")]
    names: Lenient<Vec<Lenient<String>>>,
    #[serde(rename = "State")]
    state: Lenient<String>,
    #[serde(rename = "Labels")]
    labels: Lenient<HashMap<String, Lenient<String>>>,
    /// Whole seconds since the epoch.
    #[serde(rename = "Created")]
    created: Lenient<i64>,
    #[serde(rename = "Mounts")]
    mounts: Lenient<Vec<Lenient<Mounted>>>,
}

/// A mount of a listing's or an inspection's `Mounts`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Mounted {
    /// `volume`, `bind`, `tmpfs`, …
    #[serde(rename = "Type")]
    kind: Lenient<String>,
    /// The volume's name.
    #[serde(rename = "Name")]
    name: Lenient<String>,
    #[serde(rename = "Destination")]
    destination: Lenient<String>,
}

/// The fields of an inspection that rt-cleanup reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Inspected {
    #[serde(rename = "Id")]
    id: Lenient<String>,
    #[serde(rename = "Name")]
    name: Lenient<String>,
    /// RFC 3339.
    #[serde(rename = "Created")]
    created: Lenient<String>,
    #[serde(rename = "State")]
    state: Lenient<InspectedState>,
    #[serde(rename = "Config")]
    config: Lenient<InspectedConfig>,
    #[serde(rename = "HostConfig")]
    host_config: Lenient<InspectedHostConfig>,
    #[serde(rename = "Mounts")]
    mounts: Lenient<Vec<Lenient<Mounted>>>,
    /// Bytes; only with `size=true`.
    #[serde(rename = "SizeRw")]
    size_rw: Lenient<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InspectedState {
    #[serde(rename = "Status")]
    status: Lenient<String>,
    /// RFC 3339; Docker's zero time for a container that never ran.
    #[serde(rename = "FinishedAt")]
    finished_at: Lenient<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InspectedConfig {
    #[serde(rename = "Labels")]
    labels: Lenient<HashMap<String, Lenient<String>>>,
    /// The paths of the volumes declared without a name (an image's `VOLUME`, `-v /path`): the
    /// keys of an object.
    #[serde(rename = "Volumes")]
    volumes: Lenient<HashMap<String, serde_json::Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InspectedHostConfig {
    /// `-v` entries: `NAME:/path[:options]`, `/host:/path[:options]`, or `/path` alone.
    #[serde(rename = "Binds")]
    binds: Lenient<Vec<Lenient<String>>>,
    /// `--mount` entries.
    #[serde(rename = "Mounts")]
    mounts: Lenient<Vec<Lenient<MountSpec>>>,
    #[serde(rename = "VolumesFrom")]
    volumes_from: Lenient<Vec<Lenient<String>>>,
}

/// A `--mount` entry of `HostConfig.Mounts`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MountSpec {
    #[serde(rename = "Type")]
    kind: Lenient<String>,
    /// The volume's name; empty or absent for an anonymous volume.
    #[serde(rename = "Source")]
    source: Lenient<String>,
    #[serde(rename = "Target")]
    target: Lenient<String>,
}

impl InspectedHostConfig {
    /// What the container's configuration says of its volumes, with the paths of
    /// `Config.Volumes` (`unnamed`).
    fn volume_config(self, mut unnamed: Vec<String>) -> VolumeConfig {
        let mut named = Vec::new();
        for bind in self.binds.texts() {
            let mut parts = bind.split(':');
            match (parts.next(), parts.next()) {
                // `/path` alone: a volume without a name at that path.
                (Some(path), None) => unnamed.push(path.to_owned()),
                // `/host:/path` is a bind mount, no volume; `NAME:/path` a named volume.
                (Some(source), Some(path)) if !source.starts_with('/') => {
                    named.push(path.to_owned());
                }
                _ => {}
            }
        }
        for spec in self
            .mounts
            .0
            .into_iter()
            .flatten()
            .filter_map(|spec| spec.0)
        {
            if spec.kind.0.as_deref() != Some("volume") {
                continue;
            }
            let Some(target) = spec.target.0 else {
                continue;
            };
            if spec.source.0.is_some_and(|source| !source.is_empty()) {
                named.push(target);
            } else {
                unnamed.push(target);
            }
        }
        VolumeConfig {
            unnamed,
            named,
            volumes_from: self.volumes_from.texts().next().is_some(),
        }
    }
}

/// A listing entry left out, and why, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LeftOut {
    /// The entry's names, where it had any.
    pub names: Vec<String>,
    /// Why it cannot be used.
    pub reason: String,
}

/// A listing, read: the containers, and the entries left out for want of a usable id.
#[derive(Debug, Default)]
pub(super) struct Listing {
    pub containers: Vec<ContainerInfo>,
    pub left_out: Vec<LeftOut>,
}

/// Reads the body of `GET /containers/json`. Only an answer that is not a JSON array fails.
pub(super) fn listing(body: &[u8]) -> Result<Listing, String> {
    let entries: Vec<Lenient<Listed>> = serde_json::from_slice(body)
        .map_err(|error| format!("the daemon's answer is not a list of containers: {error}"))?;
    let mut listing = Listing::default();
    for entry in entries {
        let Some(entry) = entry.0 else {
            listing.left_out.push(LeftOut {
                names: Vec::new(),
                reason: "the entry is not an object".to_owned(),
            });
            continue;
        };
        let names: Vec<String> = entry.names.texts().map(without_slash).collect();
        match usable_id(entry.id) {
            Ok(id) => listing.containers.push(ContainerInfo {
                id,
                names,
                state: entry.state.0.unwrap_or_default(),
                labels: entry.labels.labels(),
                created_ms: entry
                    .created
                    .0
                    .and_then(|seconds| seconds.checked_mul(1000)),
                finished_ms: None,
                volumes: entry.mounts.volumes(),
                ..ContainerInfo::default()
            }),
            Err(reason) => listing.left_out.push(LeftOut { names, reason }),
        }
    }
    Ok(listing)
}

/// Reads the body of `GET /containers/{ref}/json`. An answer that is not a JSON object, or
/// that names no usable container id, fails.
pub(super) fn inspection(body: &[u8]) -> Result<ContainerInfo, String> {
    let inspected: Lenient<Inspected> = serde_json::from_slice(body)
        .map_err(|error| format!("the daemon's answer is not a container's inspection: {error}"))?;
    let inspected = inspected
        .0
        .ok_or("the daemon's answer is not a container's inspection: it is not an object")?;
    let id = usable_id(inspected.id)
        .map_err(|reason| format!("the daemon's inspection is unusable: {reason}"))?;
    let state = inspected.state.0.unwrap_or_default();
    let config = inspected.config.0.unwrap_or_default();
    let unnamed = config.volumes.0.unwrap_or_default().into_keys().collect();
    Ok(ContainerInfo {
        id,
        names: inspected.name.0.map(without_slash).into_iter().collect(),
        state: state.status.0.unwrap_or_default(),
        labels: config.labels.labels(),
        created_ms: inspected.created.0.as_deref().and_then(parse_rfc3339_ms),
        finished_ms: state.finished_at.0.as_deref().and_then(parse_rfc3339_ms),
        size_rw: inspected.size_rw.0,
        volumes: inspected.mounts.volumes(),
        volume_config: Box::new(
            inspected
                .host_config
                .0
                .unwrap_or_default()
                .volume_config(unnamed),
        ),
    })
}

/// Reads the body of Podman's `GET /libpod/volumes/json`: the names of the volumes it marks
/// `Anonymous`. Only an answer that is not a JSON array fails; an entry without a name or a mark
/// is not anonymous.
pub(super) fn anonymous_volumes(body: &[u8]) -> Result<HashSet<String>, String> {
    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Volume {
        #[serde(rename = "Name")]
        name: Lenient<String>,
        #[serde(rename = "Anonymous")]
        anonymous: Lenient<bool>,
    }
    let volumes: Vec<Lenient<Volume>> = serde_json::from_slice(body)
        .map_err(|error| format!("the daemon's answer is not a list of volumes: {error}"))?;
    Ok(volumes
        .into_iter()
        .filter_map(|volume| volume.0)
        .filter(|volume| volume.anonymous.0 == Some(true))
        .filter_map(|volume| volume.name.0)
        .collect())
}

/// The message of an error answer: Docker's `{"message": "…"}`, else the body as it is.
pub(super) fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorAnswer {
        message: String,
    }
    serde_json::from_slice::<ErrorAnswer>(body).map_or_else(
        |_| String::from_utf8_lossy(body).trim().to_owned(),
        |answer| answer.message,
    )
}

/// The id of an answer, when it can be sent back to the daemon in a request path.
fn usable_id(id: Lenient<String>) -> Result<String, String> {
    let id = id.0.ok_or("it has no container id")?;
    match ContainerRef::parse(&id) {
        Ok(_) => Ok(id),
        Err(_) => Err(format!(
            "its id {} is not a container id",
            crate::value::FieldValue::text(&id)
        )),
    }
}

fn without_slash(name: String) -> String {
    match name.strip_prefix('/') {
        Some(stripped) => stripped.to_owned(),
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID_A: &str = "a6aef04b1d90277710cee893eebffa895504c44943c0cdab3e670a582c05e523";
    const ID_B: &str = "59693b6205e555f9e3e83955c3882d2654218ad60e381c50a9b05c390b2f57e9";

    #[test]
    fn a_podman_listing_with_a_stopped_container_is_read() {
        // Podman 4.3.1's answer, as captured from the test service.
        let body = format!(
            r#"[{{"Id":"{ID_A}","Names":["/jovial_mendeleev"],"Image":"localhost/busybox:1",
            "Command":"sleep 2","Created":1796215753,"Ports":[],"Labels":{{"owner":"g-1"}},
            "State":"stopped","Status":"Exited (0) 3 seconds ago",
            "NetworkSettings":{{"Networks":null}},"Mounts":[],"Name":"","Config":null,
            "NetworkingConfig":null,"Platform":null,"AdjustCPUShares":false}}]"#
        );
        let listing = listing(body.as_bytes()).unwrap();
        assert!(listing.left_out.is_empty());
        assert_eq!(
            listing.containers,
            [ContainerInfo {
                id: ID_A.into(),
                names: vec!["jovial_mendeleev".into()],
                state: "stopped".into(),
                labels: HashMap::from([("owner".into(), "g-1".into())]),
                created_ms: Some(1_796_215_753_000),
                ..ContainerInfo::default()
            }]
        );
    }

    #[test]
    fn fields_that_are_missing_null_or_of_another_type_are_read_as_absent() {
        let body = format!(
            r#"[
              {{"Id":"{ID_A}","State":"hibernating","Names":null,"Labels":{{"owner":"g-1",
                "n":5,"x":null}},"Created":"yesterday","Mounts":{{"new":"shape"}}}},
              {{"Id":"{ID_B}","State":null,"Names":["/b",7,null],"Labels":[],"Created":1.5}},
              {{"Names":["/no-id"],"State":"exited"}},
              {{"Id":42,"Names":["/number-id"]}},
              {{"Id":"../../etc","Names":["/hostile-id"]}},
              "not an object",
              null
            ]"#
        );
        let listing = listing(body.as_bytes()).unwrap();
        assert_eq!(listing.containers.len(), 2);
        let a = &listing.containers[0];
        assert_eq!(a.state, "hibernating");
        assert!(a.names.is_empty());
        assert_eq!(a.labels, HashMap::from([("owner".into(), "g-1".into())]));
        assert_eq!(a.created_ms, None);
        let b = &listing.containers[1];
        assert_eq!(b.state, "", "a null state is no state");
        assert_eq!(b.names, ["b"]);
        assert!(b.labels.is_empty());
        assert_eq!(b.created_ms, None);
        let left_out: Vec<(&[String], &str)> = listing
            .left_out
            .iter()
            .map(|left| (left.names.as_slice(), left.reason.as_str()))
            .collect();
        assert_eq!(
            left_out,
            [
                (&["no-id".to_owned()][..], "it has no container id"),
                (&["number-id".to_owned()][..], "it has no container id"),
                (
                    &["hostile-id".to_owned()][..],
                    "its id \"../../etc\" is not a container id"
                ),
                (&[][..], "the entry is not an object"),
                (&[][..], "the entry is not an object"),
            ]
        );
    }

    #[test]
    fn only_an_answer_that_is_no_list_fails_the_listing() {
        for body in [&b"{}"[..], b"", b"[{", b"\"text\"", b"null"] {
            let error = listing(body).unwrap_err();
            assert!(error.contains("not a list of containers"), "{error}");
        }
        assert!(listing(b"[]").unwrap().containers.is_empty());
    }

    #[test]
    fn an_inspection_is_read_leniently_but_needs_a_usable_id() {
        let body = format!(
            r#"{{"Id":"{ID_A}","Name":"/game-1","Created":"2026-11-01T00:00:00.5Z",
            "State":{{"Status":"dead","FinishedAt":"2026-11-02T00:00:00Z","Health":7}},
            "Config":{{"Labels":{{"owner":"g-1","n":null}}}},"GraphDriver":"new"}}"#
        );
        let info = inspection(body.as_bytes()).unwrap();
        assert_eq!(info.id, ID_A);
        assert_eq!(info.names, ["game-1"]);
        assert_eq!(info.state, "dead");
        assert_eq!(info.labels, HashMap::from([("owner".into(), "g-1".into())]));
        assert_eq!(info.created_ms, parse_rfc3339_ms("2026-11-01T00:00:00.5Z"));
        assert_eq!(info.finished_ms, parse_rfc3339_ms("2026-11-02T00:00:00Z"));

        let bare = inspection(format!(r#"{{"Id":"{ID_B}","State":"stopped"}}"#).as_bytes())
            .expect("a state of another shape is no state");
        assert_eq!(
            (bare.state.as_str(), bare.finished_ms, bare.names.len()),
            ("", None, 0)
        );
        assert!(bare.labels.is_empty());

        for body in [r#"{"Name":"/x"}"#, r#"{"Id":"a/b"}"#, "[]", "not json"] {
            assert!(inspection(body.as_bytes()).is_err(), "{body}");
        }
    }

    #[test]
    fn an_error_answer_gives_the_daemons_message() {
        assert_eq!(
            error_message(br#"{"message":"No such container: x"}"#),
            "No such container: x"
        );
        assert_eq!(error_message(b"plain text\n"), "plain text");
    }

    #[test]
    fn an_inspection_gives_the_size_the_volumes_and_what_the_configuration_says_of_them() {
        // Docker 20.10's answer to `size=true` for a container made with `-v /anon -v
        // r3a-named:/named --mount type=volume,dst=/m` (trimmed).
        let body = format!(
            r#"{{"Id":"{ID_A}","Name":"/g","State":{{"Status":"exited"}},
            "SizeRw":3145728,"SizeRootFs":5127998,
            "Config":{{"Volumes":{{"/anon":{{}}}},"Labels":null}},
            "HostConfig":{{"Binds":["r3a-named:/named","/srv/data:/data:ro","/loose"],
                "Mounts":[{{"Type":"volume","Target":"/m"}},
                          {{"Type":"volume","Source":"other","Target":"/o"}},
                          {{"Type":"bind","Source":"/etc","Target":"/e"}}],
                "VolumesFrom":null}},
            "Mounts":[
              {{"Type":"volume","Name":"r3a-named","Source":"/x","Destination":"/named"}},
              {{"Type":"volume","Name":"315c03c3","Source":"/y","Destination":"/anon"}},
              {{"Type":"bind","Source":"/srv/data","Destination":"/data"}},
              {{"Type":"volume","Name":"","Destination":"/nameless"}},
              {{"Type":"volume","Name":"e9703c72","Destination":"/m"}}]}}"#
        );
        let info = inspection(body.as_bytes()).unwrap();
        assert_eq!(info.size_rw, Some(3_145_728));
        let volumes: Vec<(&str, &str)> = info
            .volumes
            .iter()
            .map(|mount| (mount.name.as_str(), mount.destination.as_str()))
            .collect();
        assert_eq!(
            volumes,
            [
                ("r3a-named", "/named"),
                ("315c03c3", "/anon"),
                ("e9703c72", "/m")
            ],
            "volumes only, and only those with a name"
        );
        assert_eq!(info.volume_config.unnamed, ["/anon", "/loose", "/m"]);
        assert_eq!(info.volume_config.named, ["/named", "/o"]);
        assert!(!info.volume_config.volumes_from);

        let from = inspection(
            format!(r#"{{"Id":"{ID_B}","HostConfig":{{"VolumesFrom":["{ID_A}"]}},"SizeRw":-1}}"#)
                .as_bytes(),
        )
        .unwrap();
        assert!(from.volume_config.volumes_from);
        assert_eq!(from.size_rw, None, "a size that is no size is unknown");
        let odd = inspection(
            format!(
                r#"{{"Id":"{ID_B}","Mounts":{{"a":1}},"HostConfig":7,"Config":{{"Volumes":[]}}}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        assert!(odd.volumes.is_empty() && odd.volume_config.unnamed.is_empty());
    }

    #[test]
    fn a_listing_gives_each_containers_volumes_by_name() {
        let body = format!(
            r#"[{{"Id":"{ID_A}","Names":["/a"],"State":"exited","Mounts":[
              {{"Type":"volume","Name":"315c03c3","Source":"","Destination":"/anon"}},
              {{"Type":"bind","Source":"/srv","Destination":"/srv"}}]}}]"#
        );
        let listing = listing(body.as_bytes()).unwrap();
        assert_eq!(listing.containers[0].volumes.len(), 1);
        assert_eq!(listing.containers[0].volumes[0].name, "315c03c3");
    }

    #[test]
    fn podmans_volume_listing_gives_the_names_it_marks_anonymous() {
        // Podman 4.3.1's `GET /libpod/volumes/json` (trimmed).
        let body = br#"[{"Name":"0e9a46be","Driver":"local","Anonymous":true},
            {"Name":"r3a-named","Anonymous":false},{"Name":"old"},{"Anonymous":true},
            "odd",{"Name":"e13c9c00","Anonymous":"yes"}]"#;
        let names = anonymous_volumes(body).unwrap();
        assert_eq!(names, HashSet::from(["0e9a46be".to_owned()]));
        assert!(anonymous_volumes(b"{}").is_err());
    }
}
