//! Table administration for the local harness and the tests: creating the table with its indexes and TTL. Deployed
//! tables come from the SAM template; no Lambda calls this.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};

use super::keys::{ACTIVE_ROOM, ACTIVE_ROOMS_INDEX, ACTIVE_SHARD, GSI1, GSI1PK, GSI1SK, PK, SK, TTL};
use super::{DynamoItemError, DynamoStore};
use crate::store::{StoreError, StoreResult};

impl DynamoStore {
    /// Creates the table with on-demand billing, its two indexes (`GSI1` and `ActiveRooms`) and TTL on `ttl`, and
    /// waits until it is active. A table made before `ActiveRooms` existed is refused, naming the index. For the local
    /// harness and tests only: deployed tables belong to the SAM template, and Lambdas never call this.
    pub async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        let indexes = match self.client.describe_table().table_name(&self.table).send().await {
            Ok(described) => Some(described.table().map_or_else(Vec::new, |table| {
                table.global_secondary_indexes().iter().filter_map(|i| i.index_name()).map(str::to_owned).collect()
            })),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => None,
            Err(e) => return Err(StoreError::backend(e)),
        };
        match indexes {
            None => self.create_table().await?,
            // DynamoDB Local cannot be trusted to add an index to an existing table (it can leave the index
            // `CREATING` and fail writes meanwhile), so such a table is refused with what to do about it.
            Some(indexes) if !indexes.iter().any(|name| name == ACTIVE_ROOMS_INDEX) => {
                return Err(StoreError::backend(DynamoItemError::MissingIndex {
                    table: self.table.clone(),
                    index: ACTIVE_ROOMS_INDEX,
                }));
            }
            Some(_) => {}
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

    async fn create_table(&self) -> StoreResult<()> {
        let gsi1 = GlobalSecondaryIndex::builder()
            .index_name(GSI1)
            .key_schema(key_element(GSI1PK, KeyType::Hash)?)
            .key_schema(key_element(GSI1SK, KeyType::Range)?)
            .projection(Projection::builder().projection_type(ProjectionType::All).build())
            .build()
            .map_err(StoreError::backend)?;
        let active_rooms = GlobalSecondaryIndex::builder()
            .index_name(ACTIVE_ROOMS_INDEX)
            .key_schema(key_element(ACTIVE_SHARD, KeyType::Hash)?)
            .key_schema(key_element(ACTIVE_ROOM, KeyType::Range)?)
            .projection(active_rooms_projection())
            .build()
            .map_err(StoreError::backend)?;
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(string_attribute(PK)?)
            .attribute_definitions(string_attribute(SK)?)
            .attribute_definitions(string_attribute(GSI1PK)?)
            .attribute_definitions(string_attribute(GSI1SK)?)
            .attribute_definitions(string_attribute(ACTIVE_SHARD)?)
            .attribute_definitions(string_attribute(ACTIVE_ROOM)?)
            .key_schema(key_element(PK, KeyType::Hash)?)
            .key_schema(key_element(SK, KeyType::Range)?)
            .global_secondary_indexes(gsi1)
            .global_secondary_indexes(active_rooms)
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            // Another process created it between our describe and create: that is the state we wanted.
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => Ok(()),
            Err(e) => Err(StoreError::backend(e)),
        }
    }

    async fn wait_until_active(&self) -> StoreResult<()> {
        for attempt in 0..120u32 {
            let described =
                self.client.describe_table().table_name(&self.table).send().await.map_err(StoreError::backend)?;
            let status = described.table().and_then(|t| t.table_status());
            if status.is_some_and(|s| *s == TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(if attempt < 10 { 50 } else { 500 })).await;
        }
        Err(StoreError::backend(DynamoItemError::Invalid("TableStatus")))
    }
}

/// Keys only: a listing reads the counts from the base table, so a count change writes nothing to the index.
fn active_rooms_projection() -> Projection {
    Projection::builder().projection_type(ProjectionType::KeysOnly).build()
}

fn string_attribute(name: &str) -> StoreResult<AttributeDefinition> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(StoreError::backend)
}

fn key_element(name: &str, key_type: KeyType) -> StoreResult<KeySchemaElement> {
    KeySchemaElement::builder().attribute_name(name).key_type(key_type).build().map_err(StoreError::backend)
}

pub(super) fn is_ttl_already_enabled(message: Option<&str>) -> bool {
    message.is_some_and(|m| m.contains("already enabled"))
}
