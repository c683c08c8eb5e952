//! Counting the requests a client sends: an SDK interceptor behind the "requests per action" figures.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextMut, BeforeSerializationInterceptorContextRef,
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError as SdkBoxError;
use aws_sdk_dynamodb::types::ReturnConsumedCapacity;

/// Counts the DynamoDB operations a client performs, by operation name, and sums the capacity they consumed.
///
/// Attach it with [`DynamoStore::from_config_with_counter`] (or [`RequestCounter::attach`] on a config builder).
/// It is an SDK interceptor: it sees every operation the client sends, including ones issued outside the store.
/// While attached it asks DynamoDB for `ReturnConsumedCapacity: TOTAL` on every data-plane call, which is why it is
/// opt-in rather than always on.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    inner: Arc<Mutex<CounterState>>,
}

#[derive(Debug, Default)]
struct CounterState {
    operations: BTreeMap<&'static str, u64>,
    attempts: u64,
    capacity_units: f64,
}

impl RequestCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the counter to a DynamoDB client configuration.
    pub fn attach(&self, builder: aws_sdk_dynamodb::config::Builder) -> aws_sdk_dynamodb::config::Builder {
        builder.interceptor(self.clone())
    }

    /// How many times each operation was executed (an execution may take several HTTP attempts).
    pub fn operations(&self) -> BTreeMap<&'static str, u64> {
        self.with_state(|s| s.operations.clone())
    }

    /// Executions of one operation, such as `"BatchWriteItem"`.
    pub fn count(&self, operation: &str) -> u64 {
        self.with_state(|s| s.operations.get(operation).copied().unwrap_or(0))
    }

    /// Executions of every operation.
    pub fn total(&self) -> u64 {
        self.with_state(|s| s.operations.values().sum())
    }

    /// HTTP attempts, retries included.
    pub fn attempts(&self) -> u64 {
        self.with_state(|s| s.attempts)
    }

    /// Capacity units DynamoDB reported as consumed (DynamoDB Local reports them too, but they mean little there).
    pub fn capacity_units(&self) -> f64 {
        self.with_state(|s| s.capacity_units)
    }

    /// Forgets everything counted so far.
    pub fn reset(&self) {
        self.with_state(|s| *s = CounterState::default());
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut CounterState) -> T) -> T {
        // A panic while holding this lock can only come from a bug in these few lines; the counts are still usable.
        let mut guard = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }
}

/// Runs `$body` with `$input` bound to the typed input of whichever data-plane operation `$erased` holds.
macro_rules! with_data_plane_input {
    ($erased:expr, $method:ident, |$input:ident| $body:expr) => {{
        use aws_sdk_dynamodb::operation as op;
        if let Some($input) = $erased.$method::<op::get_item::GetItemInput>() {
            $body
        } else if let Some($input) = $erased.$method::<op::put_item::PutItemInput>() {
            $body
        } else if let Some($input) = $erased.$method::<op::update_item::UpdateItemInput>() {
            $body
        } else if let Some($input) = $erased.$method::<op::delete_item::DeleteItemInput>() {
            $body
        } else if let Some($input) = $erased.$method::<op::query::QueryInput>() {
            $body
        } else if let Some($input) = $erased.$method::<op::scan::ScanInput>() {
            $body
        } else if let Some($input) = $erased.$method::<op::batch_write_item::BatchWriteItemInput>() {
            $body
        } else if let Some($input) = $erased.$method::<op::batch_get_item::BatchGetItemInput>() {
            $body
        } else if let Some($input) = $erased.$method::<op::transact_write_items::TransactWriteItemsInput>() {
            $body
        } else if let Some($input) = $erased.$method::<op::transact_get_items::TransactGetItemsInput>() {
            $body
        }
    }};
}

/// The operation name of a type-erased input (the SDK's `Input`). The SDK's `Metadata` in the config bag would say
/// the same, but naming it needs the `aws-smithy-runtime-api` crate; matching the inputs we send keeps the dependency
/// list as it is. A macro because the SDK does not re-export the erased `Input` and `Output` types.
macro_rules! operation_name {
    ($input:expr) => {
        operation_name!(@names $input;
            get_item::GetItemInput => "GetItem",
            put_item::PutItemInput => "PutItem",
            update_item::UpdateItemInput => "UpdateItem",
            delete_item::DeleteItemInput => "DeleteItem",
            query::QueryInput => "Query",
            scan::ScanInput => "Scan",
            batch_write_item::BatchWriteItemInput => "BatchWriteItem",
            batch_get_item::BatchGetItemInput => "BatchGetItem",
            transact_write_items::TransactWriteItemsInput => "TransactWriteItems",
            transact_get_items::TransactGetItemsInput => "TransactGetItems",
            create_table::CreateTableInput => "CreateTable",
            describe_table::DescribeTableInput => "DescribeTable",
            delete_table::DeleteTableInput => "DeleteTable",
            update_time_to_live::UpdateTimeToLiveInput => "UpdateTimeToLive",
            list_tables::ListTablesInput => "ListTables",
        )
    };
    (@names $input:expr; $($module:ident :: $ty:ident => $name:literal),* $(,)?) => {{
        let input = $input;
        $(if input.downcast_ref::<aws_sdk_dynamodb::operation::$module::$ty>().is_some() { $name } else)* { "Other" }
    }};
}

fn capacity_units(capacity: Option<&aws_sdk_dynamodb::types::ConsumedCapacity>) -> f64 {
    capacity.and_then(aws_sdk_dynamodb::types::ConsumedCapacity::capacity_units).unwrap_or(0.0)
}

fn capacity_units_sum(capacity: &[aws_sdk_dynamodb::types::ConsumedCapacity]) -> f64 {
    capacity.iter().filter_map(aws_sdk_dynamodb::types::ConsumedCapacity::capacity_units).sum()
}

/// Capacity units reported in a type-erased output (the SDK's `Output`).
macro_rules! consumed_capacity {
    ($output:expr) => {{
        use aws_sdk_dynamodb::operation as op;
        let output = $output;
        if let Some(o) = output.downcast_ref::<op::get_item::GetItemOutput>() {
            capacity_units(o.consumed_capacity())
        } else if let Some(o) = output.downcast_ref::<op::put_item::PutItemOutput>() {
            capacity_units(o.consumed_capacity())
        } else if let Some(o) = output.downcast_ref::<op::update_item::UpdateItemOutput>() {
            capacity_units(o.consumed_capacity())
        } else if let Some(o) = output.downcast_ref::<op::delete_item::DeleteItemOutput>() {
            capacity_units(o.consumed_capacity())
        } else if let Some(o) = output.downcast_ref::<op::query::QueryOutput>() {
            capacity_units(o.consumed_capacity())
        } else if let Some(o) = output.downcast_ref::<op::scan::ScanOutput>() {
            capacity_units(o.consumed_capacity())
        } else if let Some(o) = output.downcast_ref::<op::batch_write_item::BatchWriteItemOutput>() {
            capacity_units_sum(o.consumed_capacity())
        } else if let Some(o) = output.downcast_ref::<op::batch_get_item::BatchGetItemOutput>() {
            capacity_units_sum(o.consumed_capacity())
        } else if let Some(o) = output.downcast_ref::<op::transact_write_items::TransactWriteItemsOutput>() {
            capacity_units_sum(o.consumed_capacity())
        } else if let Some(o) = output.downcast_ref::<op::transact_get_items::TransactGetItemsOutput>() {
            capacity_units_sum(o.consumed_capacity())
        } else {
            0.0
        }
    }};
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "BellhopRequestCounter"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), SdkBoxError> {
        let name: &'static str = operation_name!(context.input());
        self.with_state(|s| *s.operations.entry(name).or_insert(0) += 1);
        Ok(())
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), SdkBoxError> {
        let input = context.input_mut();
        with_data_plane_input!(input, downcast_mut, |typed| {
            typed.return_consumed_capacity = Some(ReturnConsumedCapacity::Total);
        });
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), SdkBoxError> {
        self.with_state(|s| s.attempts += 1);
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), SdkBoxError> {
        if let Some(Ok(output)) = context.output_or_error() {
            let units: f64 = consumed_capacity!(output);
            self.with_state(|s| s.capacity_units += units);
        }
        Ok(())
    }
}
