//! Events going in and coming out.

use crate::record::RecordRef;

/// An event to append. Stream versions and positions are assigned by the log;
/// the timestamp too, unless given (to import history).
///
/// ```
/// use chronolog::NewEvent;
/// let event = NewEvent::new("order-17", "Shipped", b"{}").with_metadata(b"{\"user\":1}");
/// assert_eq!(event.stream, "order-17");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewEvent<'a> {
    /// Stream (aggregate) the event belongs to: 1 to 1024 bytes of UTF-8.
    pub stream: &'a str,
    /// What happened: 1 to 255 bytes of UTF-8.
    pub event_type: &'a str,
    /// Application metadata (correlation ids, user); may be empty.
    pub metadata: &'a [u8],
    /// The event's data.
    pub payload: &'a [u8],
    /// Nanoseconds since the Unix epoch; `None` lets the log use its clock. A
    /// given timestamp older than the log's last one is rejected with
    /// [`crate::Error::TimestampOutOfOrder`]; the clock's reading is raised to
    /// the last timestamp instead, so timestamps never decrease along the log.
    pub timestamp_ns: Option<u64>,
    /// What the stream's version must be just before this event (optimistic
    /// concurrency); default [`ExpectedVersion::Any`].
    pub expected_version: ExpectedVersion,
}

/// The optimistic-concurrency guard of an event: what its stream must look
/// like just before it is appended. A mismatch fails the whole batch with
/// [`crate::Error::WrongExpectedVersion`] and writes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpectedVersion {
    /// No check.
    #[default]
    Any,
    /// The stream must have no event yet.
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream's last event must have exactly this version.
    Exact(u64),
    /// The stream's last event must be this very event: this version, at this
    /// global position, and (when given) with this stored record CRC. Unlike
    /// [`ExpectedVersion::Exact`], it fails after a truncation cut the stream
    /// back and later appends grew it to the same version again with other
    /// events, so a decision taken on the old history is never appended to
    /// the new one. The aggregate store guards its commands with it.
    ///
    /// What is compared is the last event's record: a stream grown back to a
    /// last record identical byte for byte (same position, version, type,
    /// payload and timestamp, which takes explicit timestamps) passes, even
    /// if earlier events differ. A record whose batch a truncation cut just
    /// after it still passes with the CRC it had before (the cut sets its
    /// batch-end flag, which changes the stored CRC, not the event). The CRC
    /// named must be of an event already in the log, not of one earlier in
    /// the same batch.
    LastEvent {
        /// Version of the stream's last event.
        version: u64,
        /// Its global position.
        position: u64,
        /// Its stored record CRC ([`crate::Appended::record_crc`],
        /// [`crate::LogView::fingerprint`]). `None` checks version and
        /// position only: for an event that was purged, whose CRC the log
        /// can no longer check (a CRC named for a purged event is refused,
        /// since the event purged may be another history's).
        record_crc: Option<u32>,
    },
}

impl ExpectedVersion {
    /// True when a stream whose last event has version and position `last`
    /// (`None`: no event) satisfies this expectation. The record CRC of
    /// [`ExpectedVersion::LastEvent`] is not judged here: the log checks it
    /// against the record itself when it appends.
    ///
    /// ```
    /// use chronolog::ExpectedVersion;
    /// assert!(ExpectedVersion::Exact(3).matches(Some((3, 40))));
    /// let last = ExpectedVersion::LastEvent { version: 3, position: 40, record_crc: None };
    /// assert!(last.matches(Some((3, 40))));
    /// assert!(!last.matches(Some((3, 41))), "version 3 again, but another event");
    /// assert!(!ExpectedVersion::NoStream.matches(Some((0, 0))));
    /// ```
    pub fn matches(self, last: Option<(u64, u64)>) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => last.is_none(),
            ExpectedVersion::StreamExists => last.is_some(),
            ExpectedVersion::Exact(version) => last.map(|(current, _)| current) == Some(version),
            ExpectedVersion::LastEvent { version, position, .. } => last == Some((version, position)),
        }
    }
}

impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedVersion::Any => write!(f, "any"),
            ExpectedVersion::NoStream => write!(f, "no stream"),
            ExpectedVersion::StreamExists => write!(f, "stream exists"),
            ExpectedVersion::Exact(version) => write!(f, "version {version}"),
            ExpectedVersion::LastEvent { version, position, record_crc: Some(crc) } => {
                write!(f, "version {version} at position {position} with record CRC {crc:#010x}")
            }
            ExpectedVersion::LastEvent { version, position, record_crc: None } => {
                write!(f, "version {version} at position {position}")
            }
        }
    }
}

impl<'a> NewEvent<'a> {
    /// An event with no metadata and the log's clock as timestamp.
    pub fn new(stream: &'a str, event_type: &'a str, payload: &'a [u8]) -> Self {
        NewEvent {
            stream,
            event_type,
            metadata: &[],
            payload,
            timestamp_ns: None,
            expected_version: ExpectedVersion::Any,
        }
    }

    /// Sets the expected version of the stream just before this event.
    pub fn with_expected_version(mut self, expected_version: ExpectedVersion) -> Self {
        self.expected_version = expected_version;
        self
    }

    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: &'a [u8]) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets an explicit timestamp.
    pub fn with_timestamp_ns(mut self, timestamp_ns: u64) -> Self {
        self.timestamp_ns = Some(timestamp_ns);
        self
    }
}

/// Where an appended event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Global position.
    pub position: u64,
    /// Version within its stream (0 for the stream's first event).
    pub stream_version: u64,
    /// Timestamp stored.
    pub timestamp_ns: u64,
    /// The record's stored CRC32: with the timestamp, what a snapshot keeps
    /// to recognise the event later (see `SnapshotStore::write_with_anchor_crc`).
    pub record_crc: u32,
}

/// An event read from the log, borrowing its strings and bytes from the
/// memory map (no copy). Its CRC was checked when it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    /// Global position.
    pub position: u64,
    /// Nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// Stream name.
    pub stream: &'a str,
    /// Version within the stream.
    pub stream_version: u64,
    /// Event type.
    pub event_type: &'a str,
    /// Metadata bytes.
    pub metadata: &'a [u8],
    /// Payload bytes.
    pub payload: &'a [u8],
}

impl<'a> EventRef<'a> {
    pub(crate) fn from_record(record: &RecordRef<'a>) -> Self {
        EventRef {
            position: record.header.position,
            timestamp_ns: record.header.timestamp_ns,
            stream: record.stream,
            stream_version: record.header.stream_version,
            event_type: record.event_type,
            metadata: record.metadata,
            payload: record.payload,
        }
    }

    /// Copies the event out of the map.
    pub fn to_event(&self) -> Event {
        Event {
            position: self.position,
            timestamp_ns: self.timestamp_ns,
            stream: self.stream.to_owned(),
            stream_version: self.stream_version,
            event_type: self.event_type.to_owned(),
            metadata: self.metadata.to_vec(),
            payload: self.payload.to_vec(),
        }
    }
}

/// An owned copy of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Global position.
    pub position: u64,
    /// Nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// Stream name.
    pub stream: String,
    /// Version within the stream.
    pub stream_version: u64,
    /// Event type.
    pub event_type: String,
    /// Metadata bytes.
    pub metadata: Vec<u8>,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

impl Event {
    /// The event as an [`EventRef`] borrowing from it, for code written
    /// against events read from the log (a projection's `apply`, say).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let directory = tempfile::tempdir()?;
    /// let log = chronolog::Log::open(directory.path(), chronolog::LogOptions::default())?;
    /// log.append(&chronolog::NewEvent::new("account-1", "Opened", b"{}"))?;
    /// let event = log.read(0)?.expect("the event just appended");
    /// assert_eq!(event.as_event_ref().to_event(), event);
    /// # Ok(())
    /// # }
    /// ```
    pub fn as_event_ref(&self) -> EventRef<'_> {
        EventRef {
            position: self.position,
            timestamp_ns: self.timestamp_ns,
            stream: &self.stream,
            stream_version: self.stream_version,
            event_type: &self.event_type,
            metadata: &self.metadata,
            payload: &self.payload,
        }
    }
}
