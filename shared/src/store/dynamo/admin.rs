//! Table administration for the local harness and the tests: creating the table with its index and TTL. Deployed
//! tables come from the SAM template; no Lambda calls this.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};

use super::keys::{GSI1, GSI1PK, GSI1SK, PK, SK, TTL};
use super::{DynamoItemError, DynamoStore};
use crate::store::{StoreError, StoreResult};

impl DynamoStore {
    /// Creates the table with on-demand billing, `GSI1` and TTL on `ttl`, and waits until it is active. For the local
    /// harness and tests only: deployed tables belong to the SAM template, and Lambdas never call this.
    pub async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        let exists = match self.client.describe_table().table_name(&self.table).send().await {
            Ok(_) => true,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => false,
            Err(e) => return Err(StoreError::backend(e)),
        };
        if !exists {
            let attribute = |name: &str| {
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(StoreError::backend)
            };
            let key = |name: &str, key_type: KeyType| {
                KeySchemaElement::builder().attribute_name(name).key_type(key_type).build().map_err(StoreError::backend)
            };
            let gsi1 = GlobalSecondaryIndex::builder()
                .index_name(GSI1)
                .key_schema(key(GSI1PK, KeyType::Hash)?)
                .key_schema(key(GSI1SK, KeyType::Range)?)
                .projection(Projection::builder().projection_type(ProjectionType::All).build())
                .build()
                .map_err(StoreError::backend)?;
            let created = self
                .client
                .create_table()
                .table_name(&self.table)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(attribute(PK)?)
                .attribute_definitions(attribute(SK)?)
                .attribute_definitions(attribute(GSI1PK)?)
                .attribute_definitions(attribute(GSI1SK)?)
                .key_schema(key(PK, KeyType::Hash)?)
                .key_schema(key(SK, KeyType::Range)?)
                .global_secondary_indexes(gsi1)
                .send()
                .await;
            match created {
                Ok(_) => {}
                // Another process created it between our describe and create: that is the state we wanted.
                Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => {}
                Err(e) => return Err(StoreError::backend(e)),
            }
        }
        self.wait_until_active().await?;
        let ttl = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(TTL)
            .build()
            .map_err(StoreError::backend)?;
        match self.client.update_time_to_live().table_name(&self.table).time_to_live_specification(ttl).send().await {
            Ok(_) => Ok(()),
            // Enabling TTL twice is rejected as a validation error; the table is already in the wanted state.
            Err(e) if e.as_service_error().is_some_and(|e| is_ttl_already_enabled(e.meta().message())) => Ok(()),
            Err(e) => Err(StoreError::backend(e)),
        }
    }

    async fn wait_until_active(&self) -> StoreResult<()> {
        for attempt in 0..120u32 {
            let described =
                self.client.describe_table().table_name(&self.table).send().await.map_err(StoreError::backend)?;
            let status = described.table().and_then(|t| t.table_status());
            if status.is_some_and(|s| *s == aws_sdk_dynamodb::types::TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(if attempt < 10 { 50 } else { 500 })).await;
        }
        Err(StoreError::backend(DynamoItemError::Invalid("TableStatus")))
    }
}

pub(super) fn is_ttl_already_enabled(message: Option<&str>) -> bool {
    message.is_some_and(|m| m.contains("already enabled"))
}
