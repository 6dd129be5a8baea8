import NIOCore

/// Who is typing, or present, in a room: a token's identity (`verified`), or the name a client
/// claims when the node runs without access control.
public struct Participant: Hashable, Sendable {
    /// The token's `sub`, or the claimed `user`.
    public var user: String
    /// The token's `name` claim, if any.
    public var name: String?
    /// True when `user` comes from a verified token; false when the client only claims it.
    public var verified: Bool

    public init(user: String, name: String?, verified: Bool) {
        self.user = user
        self.name = name
        self.verified = verified
    }

    /// Writes `{"room":…,"user":…,"name":…,"verified":…}` (`name` only when there is one): a
    /// typing signal's data.
    public func writeJSON(room: RoomName, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("{\"room\":")
        JSONString.write(room.value, into: &buffer)
        buffer.writeStaticString(",")
        writeFields(into: &buffer)
        buffer.writeStaticString("}")
    }

    /// Writes `"user":…,"name":…,"verified":…` without braces.
    public func writeFields(into buffer: inout ByteBuffer) {
        buffer.writeStaticString("\"user\":")
        JSONString.write(user, into: &buffer)
        if let name {
            buffer.writeStaticString(",\"name\":")
            JSONString.write(name, into: &buffer)
        }
        buffer.writeStaticString(verified ? ",\"verified\":true" : ",\"verified\":false")
    }
}
