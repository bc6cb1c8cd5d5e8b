//! A small bank domain for the CQRS tests: accounts (an aggregate) and a
//! balances read model (a projection) that refuses to see an event twice.

use std::collections::BTreeMap;

use chronolog::cqrs::{Aggregate, CodecError, Projection};
use chronolog::{EventRef, Filter};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub opened: bool,
    pub balance: i64,
    pub events: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountEvent {
    Opened,
    Deposited(i64),
    Withdrew(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountCommand {
    Open,
    Deposit(i64),
    Withdraw(i64),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("the account is not open")]
    NotOpen,
    #[error("the account is already open")]
    AlreadyOpen,
    #[error("insufficient funds")]
    InsufficientFunds,
}

impl Aggregate for Account {
    type Event = AccountEvent;
    type Command = AccountCommand;
    type Error = AccountError;
    const KIND: &'static str = "account";

    fn event_type(event: &AccountEvent) -> &'static str {
        match event {
            AccountEvent::Opened => "Opened",
            AccountEvent::Deposited(_) => "Deposited",
            AccountEvent::Withdrew(_) => "Withdrew",
        }
    }

    fn apply(&mut self, event: &AccountEvent) {
        self.events += 1;
        match event {
            AccountEvent::Opened => self.opened = true,
            AccountEvent::Deposited(amount) => self.balance += amount,
            AccountEvent::Withdrew(amount) => self.balance -= amount,
        }
    }

    fn handle(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        match *command {
            AccountCommand::Open if self.opened => Err(AccountError::AlreadyOpen),
            AccountCommand::Open => Ok(vec![AccountEvent::Opened]),
            _ if !self.opened => Err(AccountError::NotOpen),
            AccountCommand::Deposit(amount) => Ok(vec![AccountEvent::Deposited(amount)]),
            AccountCommand::Withdraw(amount) if amount > self.balance => Err(AccountError::InsufficientFunds),
            AccountCommand::Withdraw(amount) => Ok(vec![AccountEvent::Withdrew(amount)]),
        }
    }
}

/// Folds a stream's events by hand: the brute-force answer.
pub fn fold_account<'a>(events: impl IntoIterator<Item = &'a AccountEvent>) -> Account {
    let mut account = Account::default();
    for event in events {
        account.apply(event);
    }
    account
}

/// Every account's balance, and a check that events arrive once, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balances {
    pub balances: BTreeMap<String, i64>,
    pub applied: u64,
    pub last_position: Option<u64>,
}

impl Projection for Balances {
    const NAME: &'static str = "balances";

    fn filter() -> Filter {
        Filter::default().stream_prefix("account-")
    }

    fn apply(&mut self, event: &EventRef<'_>) -> Result<(), CodecError> {
        if self.last_position.is_some_and(|last| event.position <= last) {
            return Err(format!("event {} seen again (last was {:?})", event.position, self.last_position).into());
        }
        let decoded: AccountEvent = serde_json::from_slice(event.payload)?;
        let balance = self.balances.entry(event.stream.to_owned()).or_default();
        match decoded {
            AccountEvent::Opened => {}
            AccountEvent::Deposited(amount) => *balance += amount,
            AccountEvent::Withdrew(amount) => *balance -= amount,
        }
        self.applied += 1;
        self.last_position = Some(event.position);
        Ok(())
    }

    fn encode(&self) -> Result<Vec<u8>, CodecError> {
        Ok(serde_json::to_vec(self)?)
    }

    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// The balances read model by brute force: every account event of the log up
/// to `end` (exclusive), folded by hand.
pub fn brute_force_balances(events: &[chronolog::Event], end: u64) -> Balances {
    let mut balances = Balances::default();
    for event in events.iter().filter(|e| e.position < end && e.stream.starts_with("account-")) {
        balances.apply(&event.as_event_ref()).expect("brute force apply");
    }
    balances
}
