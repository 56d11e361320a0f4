//! File-system methods, executed by the agent inside the sandbox.
//!
//! Decision: the agent runs as the sandbox user inside the sandbox's mount namespace. So every
//! path resolves exactly as it would for a process in the sandbox, including `..` and symlinks,
//! and relative paths start at the workspace, which is the agent's working directory. Host files
//! outside the sandbox's mounts cannot be named at all, and permissions are the sandbox user's.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::errors;

/// Outcome of one method: the `result` envelope, or a parameter error for `Invalid params`.
pub enum Outcome {
    Result(Value),
    InvalidParams(String),
}

/// Open file handles of one sandbox, keyed by the `fileHandleId` sent to clients.
#[derive(Debug, Default)]
pub struct Handles {
    files: Mutex<HashMap<u64, File>>,
    next_id: Mutex<u64>,
}

#[derive(Deserialize)]
struct PathParams {
    path: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WriteOptions {
    append: Option<bool>,
    create: Option<bool>,
    create_new: Option<bool>,
    mode: Option<u32>,
}

#[derive(Deserialize)]
struct WriteParams {
    path: String,
    content: String,
    options: Option<WriteOptions>,
}

#[derive(Deserialize, Default)]
struct MkdirOptions {
    recursive: Option<bool>,
    mode: Option<u32>,
}

#[derive(Deserialize)]
struct MkdirParams {
    path: String,
    options: Option<MkdirOptions>,
}

#[derive(Deserialize, Default)]
struct RemoveOptions {
    recursive: Option<bool>,
}

#[derive(Deserialize)]
struct RemoveParams {
    path: String,
    options: Option<RemoveOptions>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RenameParams {
    old_path: String,
    new_path: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CopyParams {
    from_path: String,
    to_path: String,
}

#[derive(Deserialize)]
struct SymlinkParams {
    target: String,
    path: String,
}

#[derive(Deserialize)]
struct ChmodParams {
    path: String,
    mode: u32,
}

#[derive(Deserialize)]
struct TruncateParams {
    name: String,
    length: Option<u64>,
}

#[derive(Deserialize, Default)]
struct TempOptions {
    dir: Option<String>,
    prefix: Option<String>,
    suffix: Option<String>,
}

#[derive(Deserialize, Default)]
struct TempParams {
    options: Option<TempOptions>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct OpenOptionsParams {
    read: Option<bool>,
    write: Option<bool>,
    append: Option<bool>,
    truncate: Option<bool>,
    create: Option<bool>,
    create_new: Option<bool>,
    mode: Option<u32>,
}

#[derive(Deserialize)]
struct OpenParams {
    path: String,
    options: Option<OpenOptionsParams>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HandleParams {
    file_handle_id: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileReadParams {
    file_handle_id: u64,
    length: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileWriteParams {
    file_handle_id: u64,
    data: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Offset {
    Number(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileSeekParams {
    file_handle_id: u64,
    offset: Offset,
    whence: u8,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileTruncateParams {
    file_handle_id: u64,
    len: Option<u64>,
}

/// Returns whether the agent implements file-system method `method`.
pub fn is_fs_method(method: &str) -> bool {
    matches!(
        method,
        "readFile"
            | "readTextFile"
            | "writeFile"
            | "writeTextFile"
            | "mkdir"
            | "stat"
            | "lstat"
            | "readDir"
            | "remove"
            | "rename"
            | "realPath"
            | "makeTempDir"
            | "makeTempFile"
            | "copyFile"
            | "symlink"
            | "readLink"
            | "chmod"
            | "truncate"
            | "open"
            | "create"
            | "fileRead"
            | "fileWrite"
            | "fileSeek"
            | "fileStat"
            | "fileTruncate"
            | "fileSync"
            | "fileSyncData"
            | "fileClose"
    )
}

/// Runs file-system method `method` with JSON `params`.
pub fn call(handles: &Handles, method: &str, params: Value) -> Outcome {
    match dispatch(handles, method, params) {
        Ok(Ok(value)) => Outcome::Result(json!({ "ok": value })),
        Ok(Err(error)) => Outcome::Result(json!({ "error": error })),
        Err(message) => Outcome::InvalidParams(message),
    }
}

type MethodResult = Result<Result<Value, Value>, String>;

fn parse<T: for<'de> Deserialize<'de>>(params: Value) -> Result<T, String> {
    serde_json::from_value(strip_nulls(params)).map_err(|error| error.to_string())
}

/// Drops `null` members so that `null` and an absent optional parameter decode alike.
pub fn strip_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, member)| !member.is_null())
                .map(|(key, member)| (key, strip_nulls(member)))
                .collect(),
        ),
        other => other,
    }
}

fn io<T>(result: std::io::Result<T>, op: &str, path: &str) -> Result<T, Value> {
    result.map_err(|error| errors::from_io(&error, op, path))
}

fn dispatch(handles: &Handles, method: &str, params: Value) -> MethodResult {
    let outcome = match method {
        "readFile" => {
            let p: PathParams = parse(params)?;
            io(fs::read(&p.path), "readfile", &p.path).map(|bytes| json!(BASE64.encode(bytes)))
        }
        "readTextFile" => {
            let p: PathParams = parse(params)?;
            io(fs::read(&p.path), "readfile", &p.path)
                .map(|bytes| json!(String::from_utf8_lossy(&bytes)))
        }
        "writeFile" | "writeTextFile" => {
            let p: WriteParams = parse(params)?;
            let content = if method == "writeFile" {
                BASE64
                    .decode(p.content.as_bytes())
                    .map_err(|_| "content: expected base64 text".to_string())?
            } else {
                p.content.into_bytes()
            };
            write_file(&p.path, &content, p.options.unwrap_or_default()).map(|()| Value::Null)
        }
        "mkdir" => {
            let p: MkdirParams = parse(params)?;
            let options = p.options.unwrap_or_default();
            let mut builder = fs::DirBuilder::new();
            builder.recursive(options.recursive.unwrap_or(false));
            builder.mode(options.mode.unwrap_or(0o777));
            io(builder.create(&p.path), "mkdir", &p.path).map(|()| Value::Null)
        }
        "stat" => {
            let p: PathParams = parse(params)?;
            io(fs::metadata(&p.path), "stat", &p.path).map(|meta| file_info(&meta))
        }
        "lstat" => {
            let p: PathParams = parse(params)?;
            io(fs::symlink_metadata(&p.path), "lstat", &p.path).map(|meta| file_info(&meta))
        }
        "readDir" => {
            let p: PathParams = parse(params)?;
            read_dir(&p.path)
        }
        "remove" => {
            let p: RemoveParams = parse(params)?;
            let recursive = p.options.unwrap_or_default().recursive.unwrap_or(false);
            remove(&p.path, recursive).map(|()| Value::Null)
        }
        "rename" => {
            let p: RenameParams = parse(params)?;
            io(rename(&p.old_path, &p.new_path), "rename", &p.old_path).map(|()| Value::Null)
        }
        "realPath" => {
            let p: PathParams = parse(params)?;
            io(fs::canonicalize(&p.path), "realpath", &p.path)
                .map(|path| json!(path.to_string_lossy()))
        }
        "makeTempDir" | "makeTempFile" => {
            let p: TempParams = parse(params)?;
            make_temp(p.options.unwrap_or_default(), method == "makeTempDir")
        }
        "copyFile" => {
            let p: CopyParams = parse(params)?;
            io(fs::copy(&p.from_path, &p.to_path), "copy", &p.from_path).map(|_| Value::Null)
        }
        "symlink" => {
            let p: SymlinkParams = parse(params)?;
            io(
                std::os::unix::fs::symlink(&p.target, &p.path),
                "symlink",
                &p.path,
            )
            .map(|()| Value::Null)
        }
        "readLink" => {
            let p: PathParams = parse(params)?;
            io(fs::read_link(&p.path), "readlink", &p.path)
                .map(|target| json!(target.to_string_lossy()))
        }
        "chmod" => {
            let p: ChmodParams = parse(params)?;
            io(
                fs::set_permissions(&p.path, fs::Permissions::from_mode(p.mode)),
                "chmod",
                &p.path,
            )
            .map(|()| Value::Null)
        }
        "truncate" => {
            let p: TruncateParams = parse(params)?;
            io(
                OpenOptions::new()
                    .write(true)
                    .open(&p.name)
                    .and_then(|file| file.set_len(p.length.unwrap_or(0))),
                "truncate",
                &p.name,
            )
            .map(|()| Value::Null)
        }
        "open" | "create" => {
            let p: OpenParams = parse(params)?;
            let options = if method == "create" {
                OpenOptionsParams {
                    read: Some(true),
                    write: Some(true),
                    truncate: Some(true),
                    create: Some(true),
                    ..OpenOptionsParams::default()
                }
            } else {
                p.options.unwrap_or_default()
            };
            open(handles, &p.path, &options)
        }
        "fileRead" => {
            let p: FileReadParams = parse(params)?;
            with_handle(handles, p.file_handle_id, |file| {
                let mut buffer = vec![0; p.length.min(16 * 1024 * 1024)];
                let read = file.read(&mut buffer)?;
                if read == 0 && !buffer.is_empty() {
                    return Ok(json!({ "data": Value::Null }));
                }
                Ok(json!({ "data": BASE64.encode(&buffer[..read]) }))
            })
        }
        "fileWrite" => {
            let p: FileWriteParams = parse(params)?;
            let data = BASE64
                .decode(p.data.as_bytes())
                .map_err(|_| "data: expected base64 text".to_string())?;
            with_handle(handles, p.file_handle_id, |file| {
                let written = file.write(&data)?;
                Ok(json!({ "bytesWritten": written }))
            })
        }
        "fileSeek" => {
            let p: FileSeekParams = parse(params)?;
            let offset = match p.offset {
                Offset::Number(number) => number,
                Offset::Text(text) => text
                    .parse()
                    .map_err(|_| "offset: expected an integer".to_string())?,
            };
            let target = match p.whence {
                0 => SeekFrom::Start(u64::try_from(offset).unwrap_or(0)),
                1 => SeekFrom::Current(offset),
                2 => SeekFrom::End(offset),
                _ => return Err("whence: expected 0, 1 or 2".to_string()),
            };
            with_handle(handles, p.file_handle_id, |file| {
                let position = file.seek(target)?;
                Ok(json!({ "position": position }))
            })
        }
        "fileStat" => {
            let p: HandleParams = parse(params)?;
            with_handle(handles, p.file_handle_id, |file| {
                Ok(file_info(&file.metadata()?))
            })
        }
        "fileTruncate" => {
            let p: FileTruncateParams = parse(params)?;
            with_handle(handles, p.file_handle_id, |file| {
                file.set_len(p.len.unwrap_or(0))?;
                Ok(Value::Null)
            })
        }
        "fileSync" | "fileSyncData" => {
            let p: HandleParams = parse(params)?;
            with_handle(handles, p.file_handle_id, |file| {
                file.sync_all()?;
                Ok(Value::Null)
            })
        }
        "fileClose" => {
            let p: HandleParams = parse(params)?;
            let removed = handles
                .files
                .lock()
                .map_err(|_| "file table unavailable".to_string())?
                .remove(&p.file_handle_id);
            match removed {
                Some(_) => Ok(Value::Null),
                None => Err(bad_resource(p.file_handle_id)),
            }
        }
        other => return Err(format!("unknown file-system method {other}")),
    };
    Ok(outcome)
}

fn write_file(path: &str, content: &[u8], options: WriteOptions) -> Result<(), Value> {
    let append = options.append.unwrap_or(false);
    let mut open = OpenOptions::new();
    open.write(true).append(append).truncate(!append);
    if options.create_new.unwrap_or(false) {
        open.create_new(true);
    } else {
        open.create(options.create.unwrap_or(true));
    }
    if let Some(mode) = options.mode {
        open.mode(mode);
    }
    let mut file = io(open.open(path), "open", path)?;
    if let Some(mode) = options.mode {
        io(
            file.set_permissions(fs::Permissions::from_mode(mode)),
            "chmod",
            path,
        )?;
    }
    io(file.write_all(content), "write", path)
}

/// Renames like rename(2), but moves regular files by copy and delete across mounts, because the
/// workspace and /tmp are separate bind mounts here while they share one file system on Deno.
fn rename(from: &str, to: &str) -> std::io::Result<()> {
    const EXDEV: i32 = 18;
    match fs::rename(from, to) {
        Err(error)
            if error.raw_os_error() == Some(EXDEV) && fs::symlink_metadata(from)?.is_file() =>
        {
            fs::copy(from, to)?;
            fs::remove_file(from)
        }
        other => other,
    }
}

fn read_dir(path: &str) -> Result<Value, Value> {
    let entries = io(fs::read_dir(path), "readdir", path)?;
    let mut listed = Vec::new();
    for entry in entries {
        let entry = io(entry, "readdir", path)?;
        let kind = io(entry.file_type(), "readdir", path)?;
        listed.push(json!({
            "name": entry.file_name().to_string_lossy(),
            "isFile": kind.is_file(),
            "isDirectory": kind.is_dir(),
            "isSymlink": kind.is_symlink(),
        }));
    }
    Ok(Value::Array(listed))
}

fn remove(path: &str, recursive: bool) -> Result<(), Value> {
    let meta = io(fs::symlink_metadata(path), "remove", path)?;
    let result = match (meta.is_dir(), recursive) {
        (true, true) => fs::remove_dir_all(path),
        (true, false) => fs::remove_dir(path),
        (false, _) => fs::remove_file(path),
    };
    io(result, "remove", path)
}

fn make_temp(options: TempOptions, directory: bool) -> Result<Value, Value> {
    let dir = options.dir.unwrap_or_else(|| "/tmp".to_string());
    let prefix = options.prefix.unwrap_or_default();
    let suffix = options.suffix.unwrap_or_default();
    for _ in 0..16 {
        let name = format!("{prefix}{}{suffix}", random_name());
        let path = format!("{}/{name}", dir.trim_end_matches('/'));
        let created = if directory {
            fs::DirBuilder::new().mode(0o700).create(&path)
        } else {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map(|_| ())
        };
        match created {
            Ok(()) => return Ok(json!(path)),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(errors::from_io(&error, "mkdtemp", &path)),
        }
    }
    Err(errors::serialized(
        "AlreadyExists",
        Some("EEXIST"),
        "failed to find an unused temporary name",
    ))
}

fn random_name() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..10)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

fn open(handles: &Handles, path: &str, options: &OpenOptionsParams) -> Result<Value, Value> {
    let mut open = OpenOptions::new();
    open.read(options.read.unwrap_or(true))
        .write(options.write.unwrap_or(false))
        .append(options.append.unwrap_or(false))
        .truncate(options.truncate.unwrap_or(false));
    if options.create_new.unwrap_or(false) {
        open.create_new(true);
    } else {
        open.create(options.create.unwrap_or(false));
    }
    open.mode(options.mode.unwrap_or(0o666));
    let file = io(open.open(path), "open", path)?;

    let id = {
        let mut next = handles
            .next_id
            .lock()
            .map_err(|_| errors::serialized("Error", None, "file table unavailable"))?;
        *next += 1;
        *next
    };
    handles
        .files
        .lock()
        .map_err(|_| errors::serialized("Error", None, "file table unavailable"))?
        .insert(id, file);
    Ok(json!({ "fileHandleId": id }))
}

fn with_handle(
    handles: &Handles,
    id: u64,
    operation: impl FnOnce(&mut File) -> std::io::Result<Value>,
) -> Result<Value, Value> {
    let mut files = handles
        .files
        .lock()
        .map_err(|_| errors::serialized("Error", None, "file table unavailable"))?;
    let Some(file) = files.get_mut(&id) else {
        return Err(bad_resource(id));
    };
    operation(file).map_err(|error| errors::from_io(&error, "file", &format!("#{id}")))
}

fn bad_resource(id: u64) -> Value {
    errors::serialized(
        "BadResource",
        None,
        &format!("file handle {id} is not open"),
    )
}

/// Builds a FileInfo object: all 21 keys, dates as ISO strings (birthtime falls back to ctime).
pub fn file_info(meta: &fs::Metadata) -> Value {
    let kind = meta.file_type();
    let ctime = iso(meta.ctime(), meta.ctime_nsec());
    let birthtime = meta
        .created()
        .ok()
        .and_then(|created| created.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|since| {
            iso(
                i64::try_from(since.as_secs()).unwrap_or(0),
                i64::from(since.subsec_nanos()),
            )
        })
        .unwrap_or_else(|| ctime.clone());
    use std::os::unix::fs::FileTypeExt;
    json!({
        "isFile": kind.is_file(),
        "isDirectory": kind.is_dir(),
        "isSymlink": kind.is_symlink(),
        "size": meta.len(),
        "mtime": iso(meta.mtime(), meta.mtime_nsec()),
        "atime": iso(meta.atime(), meta.atime_nsec()),
        "birthtime": birthtime,
        "ctime": ctime,
        "mode": meta.mode(),
        "dev": meta.dev(),
        "ino": meta.ino(),
        "nlink": meta.nlink(),
        "uid": meta.uid(),
        "gid": meta.gid(),
        "rdev": meta.rdev(),
        "blksize": meta.blksize(),
        "blocks": meta.blocks(),
        "isBlockDevice": kind.is_block_device(),
        "isCharDevice": kind.is_char_device(),
        "isFifo": kind.is_fifo(),
        "isSocket": kind.is_socket(),
    })
}

/// Formats Unix time as `2025-01-01T00:00:00.000Z`.
pub fn iso(seconds: i64, nanos: i64) -> String {
    let total = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
    let moment =
        OffsetDateTime::from_unix_timestamp_nanos(total).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    moment
        .format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn iso_has_milliseconds() {
        assert_eq!(iso(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_735_689_600, 123_456_789), "2025-01-01T00:00:00.123Z");
    }

    #[test]
    fn file_info_has_all_keys() {
        let dir = std::env::temp_dir();
        let info = file_info(&fs::metadata(&dir).unwrap());
        assert_eq!(info.as_object().unwrap().len(), 21);
        assert_eq!(info["isDirectory"], true);
    }

    #[test]
    fn missing_path_param_is_invalid() {
        let handles = Handles::default();
        let Outcome::InvalidParams(message) = call(&handles, "readTextFile", json!({})) else {
            panic!("expected invalid params");
        };
        assert!(message.contains("`path`"), "{message}");
    }
}
