//! Errors of the regularizers, classified the way PyTorch classifies them.

use tch::TchError;

/// What went wrong: wrong kind of argument (TypeError), wrong value (ValueError), a graph, device
/// or engine problem (RuntimeError), or an error raised by a caller's callback (an interrupt, a
/// draw from the caller's generator), passed through as it was raised.
#[derive(Debug)]
pub enum Error {
    Type(String),
    Value(String),
    Runtime(String),
    Callback(Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    pub fn type_error(msg: impl Into<String>) -> Self {
        Error::Type(msg.into())
    }

    pub fn value_error(msg: impl Into<String>) -> Self {
        Error::Value(msg.into())
    }

    pub fn runtime_error(msg: impl Into<String>) -> Self {
        Error::Runtime(msg.into())
    }
}

/// libtorch appends a C++ stack trace to its messages; users need only the sentence before it.
pub fn first_paragraph(message: &str) -> &str {
    let end = ["\nException raised from", "\nframe #"]
        .iter()
        .filter_map(|marker| message.find(marker))
        .min()
        .unwrap_or(message.len());
    message[..end].trim()
}

impl From<TchError> for Error {
    fn from(err: TchError) -> Self {
        let message = match &err {
            TchError::Torch(message) => first_paragraph(message).to_owned(),
            other => other.to_string(),
        };
        if message.contains("backward through the graph a second time") {
            return Error::Runtime(format!(
                "the graph of y was already freed by an earlier backward pass; call the \
                 regularizer before loss.backward(), or pass retain_graph=True to the earlier \
                 backward (libtorch: {message})"
            ));
        }
        if message.contains("does not currently support double backward") {
            return Error::Runtime(format!(
                "torch.compile does not support double backward, which this computation needs; \
                 run the model uncompiled where it is used (for a compiled module, \
                 `model._orig_mod(data)`) (libtorch: {message})"
            ));
        }
        Error::Runtime(message)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// A callback run between projections or iterations; it lets Ctrl-C through on long calls.
pub type Interrupt<'a> = &'a dyn Fn() -> Result<()>;
