//! What a migrations directory held the last time it was read, so that a run
//! with a long history need not open every file again.
//!
//! Every run checks each applied migration's checksum against the history, so
//! it reads every file; over thousands of migrations opening and reading
//! them is most of a run with nothing to do. The cache keeps each file's
//! contents with its *stamp*: device, inode, size, and modification and
//! change times to the nanosecond, as `stat` tells them. A file whose stamp is
//! the one recorded is taken from the cache; any other is read from disk. The
//! change time moves on every write, rename or `touch` of a file and cannot
//! be set back by a program, so an edited migration always misses the cache
//! and its checksum is computed from what is on disk (git's index trusts
//! the same fields).
//!
//! A file changed twice within the filesystem's timestamp resolution could
//! keep its stamp: a file is recorded only once its change time is at least
//! [`SETTLED`] in the past, as git's index treats "racily clean" entries.
//!
//! Only on Linux, and only for a directory on a local filesystem (ext4, XFS,
//! btrfs, tmpfs, overlayfs, F2FS, ZFS, bcachefs): a network or FUSE
//! filesystem (NFS, SMB, 9p, virtiofs) may answer `stat` from attributes it
//! cached up to a minute ago, and only opening a file makes it look again,
//! so there every file is read, as without a cache.
//!
//! The cache holds SQL that will run: a cache file not owned by the user
//! running airlock, or that others may write, is not used; airlock writes
//! its own readable by its owner only.
//!
//! The cache is one file per migrations directory under a cache directory
//! (`AIRLOCK_CACHE_DIR`, else `$XDG_CACHE_HOME/airlock`, else
//! `~/.cache/airlock`), written whole to a temporary file and renamed, so a
//! reader never sees half of one. A cache that cannot be read, is of another
//! format or names another directory is ignored; failing to write one is not
//! an error (the next run reads the files again).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// How old a file's last change must be before it is recorded.
pub const SETTLED: Duration = Duration::from_secs(2);

/// The format written; any other is ignored.
const FORMAT: u32 = 1;

/// Where caches are kept unless told: `AIRLOCK_CACHE_DIR` (empty: nowhere,
/// every file is read), else `$XDG_CACHE_HOME/airlock`, else `~/.cache/airlock`.
pub fn default_dir() -> Option<PathBuf> {
    let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = std::env::var_os("AIRLOCK_CACHE_DIR") {
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    set("XDG_CACHE_HOME").or_else(|| set("HOME").map(|home| home.join(".cache"))).map(|dir| dir.join("airlock"))
}

/// What identifies one version of a file on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    /// The stamp of the file `name` names in the directory `dir` (through
    /// symbolic links, as it is read); None for anything else, or when it
    /// cannot be looked at. Relative to the open directory: one path
    /// component for the kernel to resolve, not the whole path.
    #[cfg(target_os = "linux")]
    fn at(dir: &Directory, name: &str) -> Option<Stamp> {
        use rustix::fs::{AtFlags, FileType, StatxFlags, statx};
        let flags = StatxFlags::TYPE | StatxFlags::INO | StatxFlags::SIZE | StatxFlags::MTIME | StatxFlags::CTIME;
        let stat = statx(&dir.0, name, AtFlags::empty(), flags).ok()?;
        // A filesystem that cannot tell one of them stamps nothing.
        if !StatxFlags::from_bits_retain(stat.stx_mask).contains(flags) {
            return None;
        }
        let time = |t: rustix::fs::StatxTimestamp| (t.tv_sec, i64::from(t.tv_nsec));
        (FileType::from_raw_mode(stat.stx_mode.into()) == FileType::RegularFile).then(|| Stamp {
            dev: (u64::from(stat.stx_dev_major) << 32) | u64::from(stat.stx_dev_minor),
            ino: stat.stx_ino,
            size: stat.stx_size,
            mtime: time(stat.stx_mtime),
            ctime: time(stat.stx_ctime),
        })
    }

    /// Elsewhere nothing is stamped (nothing is cached).
    #[cfg(not(target_os = "linux"))]
    fn at(_dir: &Directory, _name: &str) -> Option<Stamp> {
        None
    }

    /// Whether the file last changed at least [`SETTLED`] before `now`.
    fn settled(&self, now: SystemTime) -> bool {
        let Ok(now) = now.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let changed = |(secs, nanos): (i64, i64)| Duration::new(secs.max(0) as u64, nanos.clamp(0, 999_999_999) as u32);
        let newest = changed(self.mtime).max(changed(self.ctime));
        newest + SETTLED <= now
    }
}

#[derive(Serialize, Deserialize)]
struct File<'a> {
    format: u32,
    /// The migrations directory, canonical: a cache of another one (a hash
    /// collision, a copied cache directory) is not used.
    dir: &'a str,
    #[serde(borrow)]
    entries: Vec<Entry<'a>>,
}

#[derive(Serialize, Deserialize)]
struct Entry<'a> {
    /// The file's path relative to the directory.
    name: &'a str,
    stamp: Stamp,
    /// Its contents (only UTF-8 files are kept: others are refused anyway).
    text: &'a str,
}

/// The migrations directory, open, to stamp its files by name.
#[cfg(target_os = "linux")]
struct Directory(rustix::fd::OwnedFd);

/// Filesystems whose `stat` tells what is on disk now (`linux/magic.h`):
/// ext2/3/4, XFS, btrfs, tmpfs, overlayfs, F2FS, ZFS, bcachefs, ramfs.
#[cfg(target_os = "linux")]
const LOCAL_FILESYSTEMS: [u32; 9] =
    [0xEF53, 0x5846_5342, 0x9123_683E, 0x0102_1994, 0x794C_7630, 0xF2F5_2010, 0x2FC1_2FC1, 0xCA45_1A4E, 0x8584_58F6];

#[cfg(target_os = "linux")]
impl Directory {
    /// The directory, open, when it is on a local filesystem.
    fn open(dir: &Path) -> Option<Directory> {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).ok()?;
        // The type's width differs between architectures; the magic numbers are 32 bits.
        #[allow(clippy::cast_possible_truncation)]
        let kind = rustix::fs::fstatfs(&fd).ok()?.f_type as u32;
        LOCAL_FILESYSTEMS.contains(&kind).then_some(Directory(fd))
    }

    /// The contents of the file `name` names in it: through the same open
    /// directory as its stamp, so both describe one file even if the
    /// directory's path is pointed elsewhere meanwhile.
    fn read(&self, name: &str) -> std::io::Result<Vec<u8>> {
        use rustix::fs::{Mode, OFlags};
        use std::io::Read;
        let fd = rustix::fs::openat(&self.0, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        let mut bytes = Vec::new();
        std::fs::File::from(fd).read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}

/// Elsewhere there is no cache.
#[cfg(not(target_os = "linux"))]
struct Directory;

#[cfg(not(target_os = "linux"))]
impl Directory {
    fn open(_dir: &Path) -> Option<Directory> {
        None
    }

    fn read(&self, _name: &str) -> std::io::Result<Vec<u8>> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
}

/// The cache file's bytes, when the user running airlock owns it and no one
/// else may write it. (Only Linux has a cache: see [`Directory`].)
#[cfg(target_os = "linux")]
fn read_own(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let mut file = std::fs::File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    if meta.uid() != rustix::process::geteuid().as_raw() || meta.mode() & 0o022 != 0 {
        return None;
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

#[cfg(not(target_os = "linux"))]
fn read_own(_path: &Path) -> Option<Vec<u8>> {
    None
}

/// The cache of one migrations directory for one discovery: what was read
/// before, and what this discovery read.
pub struct ReadCache {
    path: PathBuf,
    dir: PathBuf,
    open: Directory,
    canonical: String,
    /// The cache file as read; `known` says where its entries lie in it.
    bytes: Vec<u8>,
    /// The cache file's entries, sorted by name, each marked when this
    /// discovery used it. Offsets, not copies: the texts are copied once,
    /// when a file is taken from the cache.
    known: Vec<Known>,
    /// The files this discovery read from disk that may be recorded.
    fresh: Mutex<Vec<(String, Stamp, String)>>,
    /// A file was read from disk (recorded or not).
    missed: AtomicBool,
    now: SystemTime,
}

struct Known {
    name: Range<usize>,
    stamp: Stamp,
    text: Range<usize>,
    used: AtomicBool,
}

impl ReadCache {
    /// The cache of `dir` kept in `cache_dir`, empty when there is none yet or
    /// it cannot be used.
    pub fn open(cache_dir: &Path, dir: &Path) -> Option<ReadCache> {
        let canonical = std::fs::canonicalize(dir).ok()?.to_str()?.to_owned();
        let digest = crate::checksum::checksum(&canonical);
        let path = cache_dir.join(format!("discovery-{}.bin", &digest[..24]));
        let open = Directory::open(dir)?;
        let bytes = read_own(&path).unwrap_or_default();
        let mut known = Vec::new();
        if let Ok(file) = postcard::from_bytes::<File>(&bytes)
            && file.format == FORMAT
            && file.dir == canonical
        {
            // Where a borrowed string lies in `bytes`.
            let at = |text: &str| {
                let start = text.as_ptr().addr() - bytes.as_ptr().addr();
                start..start + text.len()
            };
            known = file
                .entries
                .iter()
                .map(|e| Known { name: at(e.name), stamp: e.stamp, text: at(e.text), used: AtomicBool::new(false) })
                .collect();
            known.sort_by(|a, b| bytes[a.name.clone()].cmp(&bytes[b.name.clone()]));
            known.dedup_by(|a, b| bytes[a.name.clone()] == bytes[b.name.clone()]);
        }
        Some(ReadCache {
            path,
            dir: dir.to_owned(),
            open,
            canonical,
            bytes,
            known,
            fresh: Mutex::new(Vec::new()),
            missed: AtomicBool::new(false),
            now: SystemTime::now(),
        })
    }

    /// The contents of `path` (a file under the directory): from the cache
    /// when its stamp is the one recorded, else from disk.
    pub fn read(&self, path: &Path, read: impl FnOnce(&Path) -> std::io::Result<Vec<u8>>) -> std::io::Result<Vec<u8>> {
        let name = path.strip_prefix(&self.dir).ok().and_then(Path::to_str);
        let (Some(name), Some(stamp)) = (name, name.and_then(|name| Stamp::at(&self.open, name))) else {
            self.missed.store(true, Ordering::Relaxed);
            return read(path);
        };
        if let Some(known) = self.known(name)
            && known.stamp == stamp
        {
            known.used.store(true, Ordering::Relaxed);
            return Ok(self.bytes[known.text.clone()].to_vec());
        }
        let bytes = self.open.read(name)?;
        self.missed.store(true, Ordering::Relaxed);
        if stamp.settled(self.now)
            && let Ok(text) = std::str::from_utf8(&bytes)
        {
            let mut fresh = self.fresh.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            fresh.push((name.to_owned(), stamp, text.to_owned()));
        }
        Ok(bytes)
    }

    /// The entry kept for `name`.
    fn known(&self, name: &str) -> Option<&Known> {
        let found = self.known.binary_search_by(|k| self.bytes[k.name.clone()].cmp(name.as_bytes()));
        found.ok().map(|i| &self.known[i])
    }

    /// The text of a part of the cache file (checked when the file was decoded).
    fn text(&self, range: &Range<usize>) -> &str {
        std::str::from_utf8(&self.bytes[range.clone()]).unwrap_or_default()
    }

    /// Writes what this discovery read, when it differs from what was kept:
    /// a file read from disk, or one kept that is no longer there. Errors are
    /// ignored (the cache only saves time).
    pub fn save(mut self) {
        if !self.missed.load(Ordering::Relaxed) && self.known.iter().all(|k| k.used.load(Ordering::Relaxed)) {
            return;
        }
        let fresh = std::mem::take(self.fresh.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner));
        let kept = self.known.iter().filter(|known| known.used.load(Ordering::Relaxed));
        let mut entries: Vec<Entry> = kept
            .map(|known| Entry { name: self.text(&known.name), stamp: known.stamp, text: self.text(&known.text) })
            .chain(fresh.iter().map(|(name, stamp, text)| Entry { name, stamp: *stamp, text }))
            .collect();
        entries.sort_by(|a, b| a.name.cmp(b.name));
        entries.dedup_by(|a, b| a.name == b.name);
        let file = File { format: FORMAT, dir: &self.canonical, entries };
        let Ok(bytes) = postcard::to_stdvec(&file) else {
            return;
        };
        let Some(parent) = self.path.parent() else {
            return;
        };
        if std::fs::create_dir_all(parent).is_err() {
            return;
        }
        // A name of its own, even for two discoveries at once in one process.
        static WRITES: AtomicUsize = AtomicUsize::new(0);
        let unique = format!("{}-{}.tmp", std::process::id(), WRITES.fetch_add(1, Ordering::Relaxed));
        let temporary = self.path.with_extension(unique);
        if write_own(&temporary, &bytes).is_err() || std::fs::rename(&temporary, &self.path).is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
    }
}

/// Writes a new file only its owner may read or write.
fn write_own(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A cache over `dir` that takes every file as settled (its clock moved
    /// past [`SETTLED`]), as it will a few seconds after the files were written.
    fn settled(cache_dir: &Path, dir: &Path) -> ReadCache {
        let mut cache = ReadCache::open(cache_dir, dir).expect("a cache");
        cache.now += SETTLED + Duration::from_secs(1);
        cache
    }

    fn from_disk(path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn never(path: &Path) -> std::io::Result<Vec<u8>> {
        panic!("{} was read from disk, not from the cache", path.display())
    }

    #[test]
    fn a_file_unchanged_since_it_was_read_comes_from_the_cache() {
        let (cache_dir, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let file = dir.path().join("1_a.up.sql");
        std::fs::write(&file, "CREATE TABLE a (id int);\n").unwrap();
        let cache = settled(cache_dir.path(), dir.path());
        assert_eq!(cache.read(&file, from_disk).unwrap(), b"CREATE TABLE a (id int);\n");
        cache.save();
        let cache = settled(cache_dir.path(), dir.path());
        assert_eq!(cache.read(&file, never).unwrap(), b"CREATE TABLE a (id int);\n");
        assert!(!cache.missed.load(Ordering::Relaxed));
    }

    #[test]
    fn a_file_changed_after_it_was_read_is_read_again_even_at_the_same_size_and_time() {
        let (cache_dir, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let file = dir.path().join("1_a.up.sql");
        std::fs::write(&file, "CREATE TABLE a (id int);\n").unwrap();
        let cache = settled(cache_dir.path(), dir.path());
        cache.read(&file, from_disk).unwrap();
        cache.save();
        // The same length, and the modification time put back: only the
        // change time (which no program can set) and the contents differ.
        let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&file, "CREATE TABLE b (id int);\n").unwrap();
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(modified).unwrap();
        let cache = settled(cache_dir.path(), dir.path());
        assert_eq!(cache.read(&file, from_disk).unwrap(), b"CREATE TABLE b (id int);\n");
    }

    #[test]
    fn a_file_changed_just_now_is_not_recorded() {
        let (cache_dir, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let file = dir.path().join("1_a.up.sql");
        std::fs::write(&file, "SELECT 1;\n").unwrap();
        // Written within the clock's resolution of the read, a second write
        // could keep the stamp: the file waits to be recorded.
        let cache = ReadCache::open(cache_dir.path(), dir.path()).unwrap();
        cache.read(&file, from_disk).unwrap();
        cache.save();
        let cache = settled(cache_dir.path(), dir.path());
        assert!(cache.known.is_empty());
        cache.read(&file, from_disk).unwrap();
        assert!(cache.missed.load(Ordering::Relaxed));
    }

    #[test]
    fn a_cache_that_cannot_be_written_only_costs_time() {
        let (place, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // The cache directory's place is taken by a file: nothing can be written there.
        let cache_dir = place.path().join("cache");
        std::fs::write(&cache_dir, "not a directory").unwrap();
        std::fs::write(dir.path().join("1_a.up.sql"), "SELECT 1;\n").unwrap();
        let options = crate::DiscoverOptions { cache_dir: Some(cache_dir.clone()), ..Default::default() };
        for _ in 0..2 {
            let found = crate::discover_with(dir.path(), &options).unwrap();
            assert_eq!(found.migrations.len(), 1);
            assert_eq!(found.migrations[0].up.sql, "SELECT 1;\n");
        }
        assert_eq!(std::fs::read_to_string(&cache_dir).unwrap(), "not a directory");
    }

    #[test]
    fn files_gone_from_the_directory_leave_the_cache() {
        let (cache_dir, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (dir.path().join("1_a.up.sql"), dir.path().join("2_b.up.sql"));
        std::fs::write(&a, "SELECT 1;\n").unwrap();
        std::fs::write(&b, "SELECT 2;\n").unwrap();
        let cache = settled(cache_dir.path(), dir.path());
        cache.read(&a, from_disk).unwrap();
        cache.read(&b, from_disk).unwrap();
        cache.save();
        std::fs::remove_file(&b).unwrap();
        let cache = settled(cache_dir.path(), dir.path());
        assert_eq!(cache.known.len(), 2);
        cache.read(&a, never).unwrap();
        cache.save();
        let cache = settled(cache_dir.path(), dir.path());
        let names: Vec<&str> = cache.known.iter().map(|k| cache.text(&k.name)).collect();
        assert_eq!(names, ["1_a.up.sql"]);
    }

    #[test]
    fn a_damaged_cache_one_others_may_write_or_one_of_another_directory_is_not_used() {
        let (cache_dir, dir, other) =
            (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let file = dir.path().join("1_a.up.sql");
        std::fs::write(&file, "SELECT 1;\n").unwrap();
        let cache = settled(cache_dir.path(), dir.path());
        let path = cache.path.clone();
        cache.read(&file, from_disk).unwrap();
        cache.save();
        let bytes = std::fs::read(&path).unwrap();

        // Cut short: nothing of it is used, and the next save replaces it.
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let cache = settled(cache_dir.path(), dir.path());
        assert!(cache.known.is_empty());
        assert_eq!(cache.read(&file, from_disk).unwrap(), b"SELECT 1;\n");
        cache.save();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);

        // One that others may write is not trusted.
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "written for its owner only");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(settled(cache_dir.path(), dir.path()).known.is_empty());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(settled(cache_dir.path(), dir.path()).known.len(), 1);

        // Another directory's cache under this one's name.
        let copy = ReadCache::open(cache_dir.path(), other.path()).unwrap().path;
        std::fs::copy(&path, &copy).unwrap();
        assert!(settled(cache_dir.path(), other.path()).known.is_empty());
    }
}
