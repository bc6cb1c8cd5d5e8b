//! The bank domain of `chronolog demo`, also compiled into
//! `examples/bank.rs` (`#[path]`): accounts (an aggregate) and their balances
//! (a read model), on the CQRS layer.

use std::collections::BTreeMap;

use chronolog::cqrs::{Aggregate, CodecError, Projection};
use chronolog::{EventRef, Filter};
use serde::{Deserialize, Serialize};

/// A bank account: the aggregate.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub open: bool,
    pub balance: i64,
}

/// What happens to an account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AccountEvent {
    Opened { owner: String },
    Credited { cents: i64 },
    Debited { cents: i64 },
    TransferredOut { cents: i64, to: String },
    TransferredIn { cents: i64, from: String },
}

impl AccountEvent {
    /// The change to the balance.
    pub fn delta(&self) -> i64 {
        match self {
            AccountEvent::Opened { .. } => 0,
            AccountEvent::Credited { cents } | AccountEvent::TransferredIn { cents, .. } => *cents,
            AccountEvent::Debited { cents } | AccountEvent::TransferredOut { cents, .. } => -cents,
        }
    }
}

/// What a teller asks of an account.
pub enum AccountCommand {
    /// Opens the account (the demo opens accounts in its generated batches,
    /// the example through this command).
    #[allow(dead_code, reason = "examples/bank.rs opens accounts with it; the demo writes them in batches")]
    Open { owner: String },
    /// Puts money in.
    Deposit(i64),
    /// Takes money out, if there is enough.
    Withdraw(i64),
}

/// Why an account refuses a command.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("the account is not open")]
    NotOpen,
    #[error("the account is already open")]
    #[allow(dead_code, reason = "examples/bank.rs opens accounts with it; the demo writes them in batches")]
    AlreadyOpen,
    #[error("insufficient funds")]
    InsufficientFunds,
}

impl Aggregate for Account {
    type Event = AccountEvent;
    type Command = AccountCommand;
    type Error = Refused;
    const KIND: &'static str = "account";

    fn event_type(event: &AccountEvent) -> &'static str {
        match event {
            AccountEvent::Opened { .. } => "Opened",
            AccountEvent::Credited { .. } => "Credited",
            AccountEvent::Debited { .. } => "Debited",
            AccountEvent::TransferredOut { .. } => "TransferredOut",
            AccountEvent::TransferredIn { .. } => "TransferredIn",
        }
    }

    fn apply(&mut self, event: &AccountEvent) {
        if let AccountEvent::Opened { .. } = event {
            self.open = true;
        }
        self.balance += event.delta();
    }

    fn handle(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, Refused> {
        match command {
            AccountCommand::Open { .. } if self.open => Err(Refused::AlreadyOpen),
            AccountCommand::Open { owner } => Ok(vec![AccountEvent::Opened { owner: owner.clone() }]),
            _ if !self.open => Err(Refused::NotOpen),
            AccountCommand::Deposit(cents) => Ok(vec![AccountEvent::Credited { cents: *cents }]),
            AccountCommand::Withdraw(cents) if *cents > self.balance => Err(Refused::InsufficientFunds),
            AccountCommand::Withdraw(cents) => Ok(vec![AccountEvent::Debited { cents: *cents }]),
        }
    }
}

/// Every account's balance: the read model.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balances(pub BTreeMap<String, i64>);

impl Projection for Balances {
    const NAME: &'static str = "balances";

    fn filter() -> Filter {
        Filter::default().stream_prefix("account-")
    }

    fn apply(&mut self, event: &EventRef<'_>) -> Result<(), CodecError> {
        let delta = serde_json::from_slice::<AccountEvent>(event.payload)?.delta();
        match self.0.get_mut(event.stream) {
            Some(balance) => *balance += delta,
            None => {
                self.0.insert(event.stream.to_owned(), delta);
            }
        }
        Ok(())
    }

    fn encode(&self) -> Result<Vec<u8>, CodecError> {
        Ok(serde_json::to_vec(self)?)
    }

    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}
