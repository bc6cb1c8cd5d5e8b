//! How application values become bytes in the log and in snapshots.

/// A codec's failure, whatever the codec.
pub type CodecError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Encodes and decodes values of `T`: an aggregate's events for the log, an
/// aggregate's state for its snapshots. Pick the encoding you want to keep on
/// disk; with the `serde` feature, [`JsonCodec`] does it for any serde type.
///
/// ```
/// use chronolog::cqrs::{Codec, CodecError};
///
/// /// A counter's events are one byte: how much was added.
/// struct ByteCodec;
/// impl Codec<u8> for ByteCodec {
///     fn encode(&self, value: &u8) -> Result<Vec<u8>, CodecError> {
///         Ok(vec![*value])
///     }
///     fn decode(&self, bytes: &[u8]) -> Result<u8, CodecError> {
///         match bytes {
///             [value] => Ok(*value),
///             _ => Err(format!("expected 1 byte, got {}", bytes.len()).into()),
///         }
///     }
/// }
/// assert_eq!(ByteCodec.decode(&ByteCodec.encode(&7)?)?, 7);
/// assert!(ByteCodec.decode(b"").is_err());
/// # Ok::<(), CodecError>(())
/// ```
pub trait Codec<T>: Send + Sync {
    /// The bytes of `value`.
    fn encode(&self, value: &T) -> Result<Vec<u8>, CodecError>;
    /// The value of `bytes`; an error for bytes this codec did not make.
    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError>;
}

/// JSON through serde: readable with `chronolog dump`, and tolerant of fields
/// added later (with `#[serde(default)]`).
///
/// ```
/// use chronolog::cqrs::{Codec, JsonCodec};
///
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// enum Event { Deposited { cents: u64 } }
///
/// let bytes = JsonCodec.encode(&Event::Deposited { cents: 250 })?;
/// assert_eq!(bytes, br#"{"Deposited":{"cents":250}}"#);
/// let decoded: Event = JsonCodec.decode(&bytes)?;
/// assert_eq!(decoded, Event::Deposited { cents: 250 });
/// # Ok::<(), chronolog::cqrs::CodecError>(())
/// ```
#[cfg(feature = "serde")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonCodec;

#[cfg(feature = "serde")]
impl<T: serde::Serialize + serde::de::DeserializeOwned> Codec<T> for JsonCodec {
    fn encode(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        Ok(serde_json::to_vec(value)?)
    }

    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}
