import Foundation
import JWTKit

/// The claims of a chat-relay token (docs/API.md, "Access control"):
///
/// ```json
/// {"sub": "alice", "name": "Alice", "exp": 1764600000,
///  "rooms": {"subscribe": ["lobby", "team-*"], "publish": ["team-*"]}}
/// ```
///
/// `iss`, `aud` and `nbf` are read when present. Other claims are ignored.
struct RelayClaims: JWTPayload {
    var sub: SubjectClaim?
    var name: String?
    var exp: ExpirationClaim?
    var nbf: NotBeforeClaim?
    var iss: IssuerClaim?
    var aud: AudienceClaim?
    var rooms: RoomGrants?

    /// Nothing here: the node checks the claims against its configuration after the signature
    /// (`TokenVerifier`), so that each failure has its own reason.
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}
