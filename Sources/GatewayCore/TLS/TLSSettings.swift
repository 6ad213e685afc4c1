/// What TLS listeners serve with (docs/TLS.md): certificate and key pairs, the first one the
/// default and SNI choosing among them, an optional client CA (mTLS) and ALPN list.
public struct TLSSettings: Sendable, Equatable {
    public struct Pair: Sendable, Equatable {
        public var certificate: String
        public var key: String
        public init(certificate: String, key: String) {
            self.certificate = certificate
            self.key = key
        }
    }

    public var pairs: [Pair] = []
    /// PEM file of the CAs whose client certificates are accepted; nil: no client certificate asked.
    public var clientCA: String?
    /// Application protocols offered, most preferred first; empty: no ALPN.
    public var alpn: [String] = []
    /// A file of 32...64 secret bytes the session-ticket keys are derived from (TicketKeys.swift); nil: a
    /// random secret of this process's own (workers get their master's, docs/TLS.md).
    public var ticketKeyFile: String?

    public init() {}
}
