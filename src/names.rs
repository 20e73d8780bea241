//! `stable_names!`: an enum whose variants each have a stable snake_case
//! name that clients, operators' queries and metric labels rely on
//! (`ErrorCode` in `error.rs`, `AuditEvent` in `audit.rs`): `as_str` and
//! `ALL`, the names written once, beside their variants.

/// Declares the enum (with `Debug, Clone, Copy, PartialEq, Eq, Hash`),
/// `ALL` (every variant, in declaration order) and `as_str` (the name).
macro_rules! stable_names {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$doc:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$doc])* $variant,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The stable name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }
    };
}
