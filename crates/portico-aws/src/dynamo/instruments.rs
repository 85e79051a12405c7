//! The `Instruments` port on the table. The device secret's hash is an attribute beside the
//! record, so reading an instrument never carries it.

use async_trait::async_trait;
use portico_core::domain::{Alert, Instrument};
use portico_core::ports::{Page, PageRequest};
use portico_core::{Instruments, Result};

use super::keys::{self, GSI1, GSI2, ONE};
use super::{DynamoStore, item, s, text};

#[async_trait]
impl Instruments for DynamoStore {
    async fn create_instrument(&self, instrument: &Instrument, secret_hash: &str) -> Result<()> {
        let sort = keys::order(instrument.created_at, &instrument.serial);
        let mut item = item(
            keys::instrument(&instrument.serial),
            ONE,
            instrument,
            &[
                (GSI1, keys::account_instruments(&instrument.account_id), sort.clone()),
                (GSI2, keys::INSTRUMENTS.into(), sort),
            ],
        )?;
        item.insert("secret_hash".into(), s(secret_hash));
        let conflict = format!("instrument `{}` already exists", instrument.serial);
        self.create(item, conflict).await
    }

    async fn instrument(&self, serial: &str) -> Result<Option<Instrument>> {
        self.get_record(keys::instrument(serial), ONE).await
    }

    async fn instrument_secret_hash(&self, serial: &str) -> Result<Option<String>> {
        Ok(self
            .get(keys::instrument(serial), ONE)
            .await?
            .and_then(|item| text(&item, "secret_hash")))
    }

    async fn list_instruments(
        &self,
        account_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Instrument>> {
        match account_id {
            Some(account) => {
                let partition = keys::account_instruments(account);
                self.page(GSI1, partition, false, page).await
            }
            None => self.page(GSI2, keys::INSTRUMENTS.into(), false, page).await,
        }
    }

    async fn record_alert(&self, alert: &Alert) -> Result<bool> {
        let sort = keys::order(alert.raised_at, &alert.id);
        self.create_once(item(
            keys::alert(&alert.id),
            ONE,
            alert,
            &[(GSI1, keys::ALERTS.into(), sort)],
        )?)
        .await
    }

    async fn list_alerts(&self, page: &PageRequest) -> Result<Page<Alert>> {
        self.page(GSI1, keys::ALERTS.into(), false, page).await
    }
}
