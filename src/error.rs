//! The one error type of the crate.
//!
//! Corruption is structured data ([`Error::Corrupted`] with a path, a byte
//! offset and a [`CorruptionKind`]), never a string, so that tools can report it
//! and tests can assert the exact failure.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in chronolog.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed.
    #[error("I/O error during {operation} on {}: {source}", path.display())]
    Io {
        /// What the engine was doing (`"write"`, `"fdatasync"`, ...).
        operation: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The disk (or the injected fault plan) has no room left. Nothing already
    /// written was damaged; the append that hit this limit wrote nothing.
    #[error("no space left while {operation} on {}", path.display())]
    StorageFull {
        /// What the engine was doing.
        operation: &'static str,
        /// The file involved.
        path: PathBuf,
    },

    /// Bytes on disk are not what the format says they must be.
    #[error("corrupted data in {} at byte offset {offset}: {kind}", path.display())]
    Corrupted {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset in that file where the damage starts.
        offset: u64,
        /// What exactly is wrong.
        kind: CorruptionKind,
    },

    /// Another writer (another process, or another `Log` in this process) holds
    /// the directory's lock.
    #[error("the log directory {} is locked by another writer", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },

    /// A sync failed earlier; the log refuses further writes because the state of
    /// unsynced data is unknown (an fsync is never retried). Reopen to recover to
    /// the last good sync.
    #[error("the log is in a failed state after an earlier error ({reason}); reopen it to recover")]
    Poisoned {
        /// The original failure, as text (the typed error went to the first caller).
        reason: String,
    },

    /// A write was attempted through a read-only handle.
    #[error("the log was opened read-only")]
    ReadOnly,

    /// A record would exceed [`crate::limits`] or the segment capacity.
    #[error("record of {size_bytes} bytes exceeds the limit of {limit_bytes} bytes")]
    RecordTooLarge {
        /// Encoded size of the record.
        size_bytes: u64,
        /// The limit in force.
        limit_bytes: u64,
    },

    /// A batch would not fit in one segment (batches never span segments, which is
    /// what makes them atomic).
    #[error("batch of {size_bytes} bytes does not fit in a segment of {limit_bytes} usable bytes")]
    BatchTooLarge {
        /// Encoded size of the batch.
        size_bytes: u64,
        /// The usable bytes of one segment.
        limit_bytes: u64,
    },

    /// `append_batch` was called with no events.
    #[error("an empty batch cannot be appended")]
    EmptyBatch,

    /// A stream name is empty or longer than the limit.
    #[error("stream name of {length} bytes is invalid (must be 1 to {limit} bytes)")]
    InvalidStreamName {
        /// Length of the rejected name.
        length: usize,
        /// Maximum length.
        limit: usize,
    },

    /// An event type is empty or longer than the limit.
    #[error("event type of {length} bytes is invalid (must be 1 to {limit} bytes)")]
    InvalidEventType {
        /// Length of the rejected type.
        length: usize,
        /// Maximum length.
        limit: usize,
    },

    /// An explicit timestamp is older than the last timestamp in the log;
    /// timestamps never decrease along the log.
    #[error("timestamp {given_ns} ns is older than the log's last timestamp {last_ns} ns")]
    TimestampOutOfOrder {
        /// The timestamp the caller gave.
        given_ns: u64,
        /// The newest timestamp already in the log.
        last_ns: u64,
    },

    /// An event's expected version did not match its stream (optimistic
    /// concurrency); nothing of the batch was written.
    ///
    /// When `expected` is a [`LastEvent`](crate::log::ExpectedVersion::LastEvent)
    /// with the actual version and position, the record CRC it names is not
    /// that event's: the event there is another one (the stream was cut and
    /// grown back), which the message says.
    #[error("wrong expected version for stream {stream}: expected {expected}, actual {}", describe_last(expected, *actual, *actual_position))]
    WrongExpectedVersion {
        /// The stream.
        stream: String,
        /// What the event expected.
        expected: crate::log::ExpectedVersion,
        /// The stream's last version (`None`: the stream has no event).
        actual: Option<u64>,
        /// The position of the stream's last event (`None`: no event).
        actual_position: Option<u64>,
    },

    /// A position outside the log was asked for where one inside is required.
    #[error("position {position} is outside the log [{first}, {next})")]
    PositionOutOfRange {
        /// The position asked for.
        position: u64,
        /// First position held by the log.
        first: u64,
        /// The position the next append will get.
        next: u64,
    },

    /// The options given to `Log::open` are inconsistent.
    #[error("invalid options: {0}")]
    InvalidOptions(&'static str),

    /// The directory holds no log (no segment file) and the options said not
    /// to create one.
    #[error("{} holds no chronolog log (no segment file)", path.display())]
    NotALog {
        /// The directory.
        path: PathBuf,
    },

    /// A snapshot name is empty or longer than the limit.
    #[error("snapshot name of {length} bytes is invalid (must be 1 to {limit} bytes)")]
    InvalidSnapshotName {
        /// Length of the rejected name.
        length: usize,
        /// Maximum length.
        limit: usize,
    },

    /// An application codec could not encode or decode a value (an event's
    /// payload or a snapshot's state).
    #[error("codec failed on {what}: {message}")]
    Codec {
        /// What was being encoded or decoded, and where (`"event at position 17"`).
        what: String,
        /// The codec's own message.
        message: String,
    },

    /// A state cannot be rebuilt: events it needs were purged and no usable
    /// snapshot covers them. Rather than an answer missing events, this.
    #[error("cannot rebuild {what}: events it needs were purged (the log starts at {first_position}) and no usable snapshot covers them")]
    MissingHistory {
        /// What was being rebuilt (`"stream account-7 from version 0"`).
        what: String,
        /// The log's first position.
        first_position: u64,
    },

    /// The log was truncated under a reader that had already read past the
    /// cut: the event at `position` is no longer the one it read. Start the
    /// reader (subscription, projection) again from before the cut.
    #[error("the log was truncated under a reader: the event at position {position} is no longer the one it read")]
    LogRewritten {
        /// The position whose event changed or vanished.
        position: u64,
    },

    /// A projection stopped: applying an event failed, its code panicked,
    /// or reading the log failed (the engine's error is then `cause`: an
    /// [`Error::LogRewritten`] there means a truncation under its
    /// checkpoint, and the projection must start again from before the
    /// cut). A failed snapshot does not stop a projection.
    #[error("projection {name} failed: {message}")]
    ProjectionFailed {
        /// The projection's name.
        name: String,
        /// What went wrong.
        message: String,
        /// The engine's error that stopped it, when one did.
        #[source]
        cause: Option<std::sync::Arc<Error>>,
    },
}

impl Error {
    /// Wraps an I/O error, turning "no space" into [`Error::StorageFull`].
    pub(crate) fn io(operation: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if is_no_space(&source) {
            Error::StorageFull { operation, path }
        } else {
            Error::Io { operation, path, source }
        }
    }

    /// Builds a corruption error.
    pub(crate) fn corrupted(path: impl Into<PathBuf>, offset: u64, kind: CorruptionKind) -> Self {
        Error::Corrupted { path: path.into(), offset, kind }
    }

    /// True for [`Error::Corrupted`].
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corrupted { .. })
    }
}

/// A stream's last event as a wrong-expected-version message names it.
fn describe_last(expected: &crate::log::ExpectedVersion, version: Option<u64>, position: Option<u64>) -> String {
    use crate::log::ExpectedVersion::LastEvent;
    match (version, position) {
        (Some(version), Some(position)) => match *expected {
            LastEvent { version: v, position: p, record_crc: Some(_) } if (v, p) == (version, position) => {
                format!("version {version} at position {position}, another event (its record CRC differs)")
            }
            _ => format!("version {version} at position {position}"),
        },
        (Some(version), None) => format!("version {version}"),
        (None, _) => "no stream".to_string(),
    }
}

fn is_no_space(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::StorageFull || error.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error())
}

/// What is wrong with corrupted bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptionKind {
    /// The stored CRC32 does not match the bytes it covers.
    ChecksumMismatch {
        /// CRC stored in the file.
        stored: u32,
        /// CRC computed over the bytes read.
        computed: u32,
    },
    /// A length field is out of its legal range.
    LengthOutOfRange {
        /// The length read.
        length: u64,
    },
    /// A structure runs past the end of its file or region.
    Truncated {
        /// Bytes the structure needs.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// The length copy at the end of a record differs from its header.
    TrailerMismatch,
    /// The field lengths in a record header do not add up to its length.
    FieldLengths,
    /// A stream name or event type is not UTF-8.
    InvalidUtf8,
    /// Flag bits this version does not know are set.
    UnknownFlags {
        /// The flag byte read.
        flags: u8,
    },
    /// The magic number is wrong: this is not the kind of file expected.
    BadMagic,
    /// The file was written by a format version this build cannot read.
    UnsupportedVersion {
        /// Version found in the file.
        found: u32,
    },
    /// A record's position does not follow its predecessor.
    PositionMismatch {
        /// The position the log expected.
        expected: u64,
        /// The position found.
        found: u64,
    },
    /// A record's timestamp is older than its predecessor's.
    TimestampRegression,
    /// A segment's header contradicts its file name or its neighbours.
    SegmentMismatch,
    /// A sealed segment's footer is missing or invalid.
    MissingFooter,
    /// Bytes that must be zero (padding after the last record) are not.
    NonZeroPadding,
    /// Records of a batch whose last record is missing, before the end of the log.
    IncompleteBatch,
    /// A segment between two others is missing (positions jump).
    MissingSegment {
        /// First position that no segment holds.
        position: u64,
    },
    /// A field holds a value outside its legal range.
    InvalidField {
        /// The field's name.
        field: &'static str,
    },
    /// A sealed segment's header or footer differs from what the manifest
    /// says of it: the file was replaced or changed after the manifest was
    /// written (the log never rewrites a segment the manifest describes).
    /// An open in `RecoveryMode::Strict`, or removing the `MANIFEST` file,
    /// has the next clean close write a manifest that describes the segments
    /// as they are.
    ManifestMismatch,
}

impl fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptionKind::ChecksumMismatch { stored, computed } => {
                write!(f, "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")
            }
            CorruptionKind::LengthOutOfRange { length } => write!(f, "length {length} out of range"),
            CorruptionKind::Truncated { needed, available } => {
                write!(f, "truncated ({needed} bytes needed, {available} available)")
            }
            CorruptionKind::TrailerMismatch => write!(f, "record trailer does not match its header"),
            CorruptionKind::FieldLengths => write!(f, "record field lengths do not add up"),
            CorruptionKind::InvalidUtf8 => write!(f, "stream name or event type is not UTF-8"),
            CorruptionKind::UnknownFlags { flags } => write!(f, "unknown flags {flags:#04x}"),
            CorruptionKind::BadMagic => write!(f, "bad magic number"),
            CorruptionKind::UnsupportedVersion { found } => write!(f, "unsupported format version {found}"),
            CorruptionKind::PositionMismatch { expected, found } => {
                write!(f, "position {found} where {expected} was expected")
            }
            CorruptionKind::TimestampRegression => write!(f, "timestamp older than the previous record's"),
            CorruptionKind::SegmentMismatch => write!(f, "segment header contradicts its name or neighbours"),
            CorruptionKind::MissingFooter => write!(f, "sealed segment has no valid footer"),
            CorruptionKind::NonZeroPadding => write!(f, "non-zero bytes after the last record"),
            CorruptionKind::IncompleteBatch => write!(f, "batch without its last record"),
            CorruptionKind::MissingSegment { position } => write!(f, "no segment holds position {position}"),
            CorruptionKind::InvalidField { field } => write!(f, "invalid value in field {field}"),
            CorruptionKind::ManifestMismatch => {
                write!(f, "segment differs from its description in MANIFEST (replaced or changed since)")
            }
        }
    }
}
