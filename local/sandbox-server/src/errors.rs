//! Serialized errors in the shape Deno's SDKs decode (`constructorName`, `code`, `message`, ...).

use serde_json::{Value, json};

/// Builds a serialized error; `stack` follows the service convention of one `<sandbox>` frame.
pub fn serialized(constructor: &str, code: Option<&str>, message: &str) -> Value {
    json!({
        "constructorName": constructor,
        "name": Value::Null,
        "message": message,
        "code": code,
        "stack": format!("{constructor}: {message}\n    at <sandbox>:1:1"),
        "cause": Value::Null,
        "errors": Value::Null,
        "suppressed": Value::Null,
        "error": Value::Null,
    })
}

/// Maps an OS error from operation `op` on `path` to Deno's error class and errno code.
pub fn from_io(error: &std::io::Error, op: &str, path: &str) -> Value {
    let errno = error.raw_os_error();
    let code = errno.map(errno_name);
    let constructor = match errno {
        Some(2) => "NotFound",
        Some(1 | 13) => "PermissionDenied",
        Some(17) => "AlreadyExists",
        Some(21) => "IsADirectory",
        Some(20) => "NotADirectory",
        Some(40) => "FilesystemLoop",
        Some(22) => "TypeError",
        _ => "Error",
    };
    let message = format!("{error}: {op} '{path}'");
    serialized(constructor, code, &message)
}

/// Builds the error both SDKs expect for an unknown or exited process.
pub fn process_not_found(pid: u64) -> Value {
    serialized(
        "TypeError",
        Some("ENOENT"),
        &format!("process {pid} not found"),
    )
}

/// Builds the error that an operation cancelled through `abort` finishes with.
pub fn aborted() -> Value {
    let mut error = serialized("DOMException", None, "The signal has been aborted");
    error["name"] = json!("AbortError");
    error
}

fn errno_name(errno: i32) -> &'static str {
    match errno {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        5 => "EIO",
        7 => "E2BIG",
        9 => "EBADF",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        16 => "EBUSY",
        17 => "EEXIST",
        18 => "EXDEV",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        24 => "EMFILE",
        26 => "ETXTBSY",
        27 => "EFBIG",
        28 => "ENOSPC",
        30 => "EROFS",
        31 => "EMLINK",
        32 => "EPIPE",
        36 => "ENAMETOOLONG",
        39 => "ENOTEMPTY",
        40 => "ELOOP",
        95 => "ENOTSUP",
        122 => "EDQUOT",
        _ => "EUNKNOWN",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_maps_to_not_found() {
        let error = std::io::Error::from_raw_os_error(2);
        let value = from_io(&error, "readfile", "/nope");
        assert_eq!(value["constructorName"], "NotFound");
        assert_eq!(value["code"], "ENOENT");
        assert_eq!(
            value["message"],
            "No such file or directory (os error 2): readfile '/nope'"
        );
    }

    #[test]
    fn non_empty_directory_maps_to_error() {
        let error = std::io::Error::from_raw_os_error(39);
        let value = from_io(&error, "remove", "d");
        assert_eq!(value["constructorName"], "Error");
        assert_eq!(value["code"], "ENOTEMPTY");
    }

    #[test]
    fn abort_error_is_dom_exception() {
        let value = aborted();
        assert_eq!(value["constructorName"], "DOMException");
        assert_eq!(value["name"], "AbortError");
    }
}
