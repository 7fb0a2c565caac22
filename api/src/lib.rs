//! iotrelay-api (work in progress).
