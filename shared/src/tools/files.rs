//! `deno_read_file` and `deno_write_file` on an open sandbox connection: windowed, binary-safe
//! reads through file handles, and writes that create parent directories.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use crate::contract::{ErrorCode, ToolError};
use crate::deno::{DenoError, OpenOptions, Sandbox, Whence, WriteOptions};
use crate::tools::arguments::{ReadEncoding, ReadFileArguments, WriteFileArguments, WriteMode};
use crate::tools::display::{payload_cost, prefix_within_budget};

/// Window returned when a read names no `limit`: 256 KiB.
pub const DEFAULT_READ_WINDOW: u64 = 256 * 1024;
/// Largest window a read may request: 1 MiB, which stays under Lambda's 6 MB response limit as
/// base64 and, after [`TEXT_PAYLOAD_BUDGET`] trimming, as escaped text.
pub const MAX_READ_WINDOW: u64 = 1024 * 1024;
/// Bytes of one `fileRead` call: 64 KiB, the chunk size Deno's SDKs use.
const READ_CHUNK: u64 = 64 * 1024;
/// Budget for text content in a response, counted as Lambda counts it after double JSON
/// escaping. Leaves about 1 MB of Lambda's 6 MB for the rest of the response.
pub const TEXT_PAYLOAD_BUDGET: usize = 5 * 1024 * 1024;

/// Reads the window `[offset, offset + limit)` of a file.
///
/// A missing file is a result (`exists: false`), not an error.
///
/// # Errors
/// [`ToolError`] for a directory path or a failure of the connection.
pub async fn read_window(
    sandbox: &Sandbox,
    path: &str,
    arguments: &ReadFileArguments,
) -> Result<Value, ToolError> {
    let info = match sandbox.stat(path).await {
        Ok(info) => info,
        Err(error) if is_not_found(&error) => {
            return Ok(json!({
                "path": path,
                "exists": false,
                "message": format!("no file at {path}; check the path with deno_exec (for example ls)"),
            }));
        }
        Err(error) => return Err(sandbox_file_error(error, path)),
    };
    if info.is_directory {
        return Err(ToolError::invalid_argument(format!(
            "path {path} is a directory; list it with deno_exec (for example ls -la) and read a file in it"
        )));
    }

    if !info.is_file {
        return Err(ToolError::invalid_argument(format!(
            "path {path} is not a regular file (a device, FIFO or socket), so it has no size to read \
             in windows; read from it with deno_exec instead, for example head -c 1024 {path} | base64"
        )));
    }

    let size = info.size;
    let limit = arguments.limit.unwrap_or(DEFAULT_READ_WINDOW);
    let offset = arguments.offset;
    let mut window = Vec::new();
    // Files in /proc and /sys report size 0 but have content, so an empty file is read too.
    if offset < size || size == 0 {
        let handle = sandbox
            .open(path, OpenOptions::default())
            .await
            .map_err(|error| sandbox_file_error(error, path))?;
        let read = read_from_handle(sandbox, handle, offset, limit, &mut window).await;
        let _ = sandbox.file_close(handle).await;
        read.map_err(|error| sandbox_file_error(error, path))?;
    }

    let (content, encoding, returned_len, replaced) = encode_window(&window, arguments.encoding);
    let end = offset + returned_len as u64;
    let truncated = end < size;
    let mut result = json!({
        "path": path,
        "exists": true,
        "size": size,
        "offset": offset,
        "bytes_returned": returned_len,
        "encoding": encoding,
        "binary": encoding == "base64",
        "truncated": truncated,
        "content": content,
    });
    if replaced {
        result["invalid_utf8_replaced"] = json!(true);
    }
    if truncated {
        result["next_offset"] = json!(end);
    }
    Ok(result)
}

/// Reads up to `limit` bytes from `offset` into `window`, in [`READ_CHUNK`] calls.
async fn read_from_handle(
    sandbox: &Sandbox,
    handle: u64,
    offset: u64,
    limit: u64,
    window: &mut Vec<u8>,
) -> Result<(), DenoError> {
    let offset = i64::try_from(offset).unwrap_or(i64::MAX);
    sandbox.file_seek(handle, offset, Whence::Start).await?;
    while (window.len() as u64) < limit {
        let wanted = (limit - window.len() as u64).min(READ_CHUNK);
        match sandbox.file_read(handle, wanted).await? {
            Some(chunk) if chunk.is_empty() => continue,
            Some(chunk) => window.extend_from_slice(&chunk),
            None => break,
        }
    }
    window.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(())
}

/// Encodes a window as text or base64. Returns the content, the encoding name, how many bytes
/// of the window the content covers, and whether invalid UTF-8 was replaced.
///
/// A multi-byte character cut by the window's end is left for the next window instead of being
/// counted as invalid, so `next_offset` always starts on a character boundary of a text file.
fn encode_window(window: &[u8], encoding: ReadEncoding) -> (String, &'static str, usize, bool) {
    let (valid_len, cut_at_end) = match std::str::from_utf8(window) {
        Ok(_) => (window.len(), false),
        Err(error) => (error.valid_up_to(), error.error_len().is_none()),
    };
    let text_end = if cut_at_end { valid_len } else { window.len() };
    match encoding {
        ReadEncoding::Base64 => (BASE64.encode(window), "base64", window.len(), false),
        ReadEncoding::Auto
            if (valid_len == window.len() || cut_at_end) && !window[..valid_len].contains(&0) =>
        {
            let text = std::str::from_utf8(&window[..valid_len]).unwrap_or_default();
            let kept = prefix_within_budget(text, TEXT_PAYLOAD_BUDGET);
            (text[..kept].to_owned(), "utf-8", kept, false)
        }
        ReadEncoding::Auto => (BASE64.encode(window), "base64", window.len(), false),
        ReadEncoding::Utf8 => lossy_text_within_budget(&window[..text_end]),
    }
}

/// Decodes `bytes` as UTF-8, replacing invalid sequences with U+FFFD, and stops before the
/// payload budget; returns the text, its encoding name, the exact number of input bytes it
/// covers, and whether anything was replaced.
fn lossy_text_within_budget(bytes: &[u8]) -> (String, &'static str, usize, bool) {
    let mut text = String::new();
    let (mut covered, mut spent, mut replaced) = (0, 0, false);
    'chunks: for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            spent += payload_cost(c);
            if spent > TEXT_PAYLOAD_BUDGET {
                break 'chunks;
            }
            text.push(c);
            covered += c.len_utf8();
        }
        if !chunk.invalid().is_empty() {
            spent += payload_cost(char::REPLACEMENT_CHARACTER);
            if spent > TEXT_PAYLOAD_BUDGET {
                break;
            }
            text.push(char::REPLACEMENT_CHARACTER);
            covered += chunk.invalid().len();
            replaced = true;
        }
    }
    (text, "utf-8", covered, replaced)
}

/// Writes a file, creating its parent directories.
///
/// # Errors
/// `conflict` when `create_new` finds an existing file; other sandbox file errors.
pub async fn write(
    sandbox: &Sandbox,
    path: &str,
    content: &[u8],
    arguments: &WriteFileArguments,
) -> Result<Value, ToolError> {
    if let Some((parent, _)) = path.rsplit_once('/')
        && !parent.is_empty()
    {
        sandbox
            .mkdir(parent, true)
            .await
            .map_err(|error| sandbox_file_error(error, parent))?;
    }
    let options = match arguments.mode {
        WriteMode::Overwrite => WriteOptions::default(),
        WriteMode::Append => WriteOptions {
            append: true,
            ..WriteOptions::default()
        },
        WriteMode::CreateNew => WriteOptions {
            create_new: true,
            ..WriteOptions::default()
        },
    };
    sandbox.write_file(path, content, options).await.map_err(|error| {
        if has_code(&error, "EEXIST") {
            ToolError::new(
                ErrorCode::Conflict,
                format!("a file already exists at {path}; use mode \"overwrite\" or \"append\", or another path"),
            )
        } else {
            sandbox_file_error(error, path)
        }
    })?;
    Ok(json!({ "path": path, "bytes_written": content.len() }))
}

fn has_code(error: &DenoError, code: &str) -> bool {
    matches!(error, DenoError::Application { error, .. } if error.code.as_deref() == Some(code))
}

fn is_not_found(error: &DenoError) -> bool {
    matches!(error, DenoError::Application { error, .. } if error.is_not_found())
}

/// Maps a file operation's failure: errors from inside the sandbox keep Deno's class and
/// message (they name the path, never contents); transport errors go through the common mapping.
fn sandbox_file_error(error: DenoError, path: &str) -> ToolError {
    match &error {
        DenoError::Application { error: inner, .. } => ToolError::invalid_argument(format!(
            "file operation on {path} failed in the sandbox: {}: {}",
            inner.constructor_name, inner.message
        )),
        _ => crate::tools::errors::from_deno(error),
    }
}
