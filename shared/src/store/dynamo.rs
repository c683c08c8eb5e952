//! DynamoDB adapter: placeholder until it lands.
