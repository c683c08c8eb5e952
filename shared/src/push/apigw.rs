//! Management API pusher on the AWS SDK: placeholder until it lands.
