//! Writing a file so that a reader sees either the old content or the new, never a part, and so
//! that nothing planted in the file's directory can redirect the write.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// How many random characters the temporary file's name holds (letters and digits: about 71
/// bits), so that another user of the directory cannot guess it.
const RANDOM_NAME_CHARACTERS: usize = 12;

/// Writes `contents` to a temporary file in the same directory, syncs it, renames it over
/// `path` and syncs the directory: the textfile collector of `node_exporter`, or a reviewer
/// reading a plan, never sees a half-written file, and a crash never leaves the old name
/// pointing at an empty one.
///
/// The temporary file is created exclusively (`O_CREAT | O_EXCL`, which never follows a
/// symlink) under an unpredictable name: `node_exporter`'s textfile directory is often writable
/// by other users, and a symlink planted at a name this tool would use must never make it
/// write into another file. The rename replaces a symlink at `path` itself rather than
/// following it.
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    // A leading dot and the `.tmp` suffix keep the temporary file out of node_exporter's
    // `*.prom` files, which it would otherwise read half-written.
    let mut temporary = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .rand_bytes(RANDOM_NAME_CHARACTERS)
        .tempfile_in(directory)?;
    // Readable by other users whatever the umask: node_exporter runs as its own user. Set on
    // the open file, not by name, so that it is this file's mode that changes.
    temporary
        .as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))?;
    temporary.write_all(contents)?;
    temporary.as_file().sync_all()?;
    // On failure the temporary file is removed when the error's handle of it is dropped.
    temporary.persist(path).map_err(|error| error.error)?;
    // The rename is durable only once the directory that holds both names is synced.
    File::open(directory)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.prom");
        write_atomically(&path, b"first\n").unwrap();
        write_atomically(&path, b"second\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second\n");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write_atomically(&dir.path().join("no/such/dir/out.prom"), b"x").is_err());
    }

    #[test]
    fn a_symlink_planted_at_a_predictable_temporary_name_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious\n").unwrap();
        // The names a scheme of this process's id, or of no random part at all, would use.
        let pid = std::process::id();
        let planted = [
            format!(".out.prom.tmp.{pid}"),
            format!("out.prom.tmp.{pid}"),
            ".out.prom.tmp".to_owned(),
            "out.prom.tmp".to_owned(),
            ".out.prom.new".to_owned(),
            "out.prom~".to_owned(),
        ];
        for name in &planted {
            symlink(&victim, dir.path().join(name)).unwrap();
        }
        let path = dir.path().join("out.prom");
        write_atomically(&path, b"metrics\n").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious\n");
        assert_eq!(fs::read(&path).unwrap(), b"metrics\n");
        assert!(fs::symlink_metadata(&path).unwrap().is_file());
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut expected: Vec<String> = planted.to_vec();
        expected.extend(["out.prom".to_owned(), "victim".to_owned()]);
        expected.sort();
        assert_eq!(names, expected, "no temporary file is left behind");
    }

    #[test]
    fn a_symlink_at_the_target_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious\n").unwrap();
        let path = dir.path().join("out.prom");
        symlink(&victim, &path).unwrap();
        write_atomically(&path, b"metrics\n").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious\n");
        assert!(fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(fs::read(&path).unwrap(), b"metrics\n");
    }

    #[test]
    fn a_failed_rename_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory that refuses the rename keeps the temporary file's name visible to the
        // test: a directory named like the target cannot be replaced by a file.
        let path = dir.path().join("out.prom");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), b"").unwrap();
        assert!(write_atomically(&path, b"x").is_err());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "the temporary file is removed when the rename fails"
        );
    }
}
