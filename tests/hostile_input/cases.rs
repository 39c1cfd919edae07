//! The calls of every RPC, who makes them, and the status codes the contract allows each.
use std::fmt;

use affinity::proto;
use tonic::Code;
use uuid::Uuid;

/// Ids that exist in the seeded tenant, so that valid-looking requests reach
/// the deep validation and the database.
#[derive(Clone)]
pub(crate) struct Seeded {
    pub(crate) org: Uuid,
    pub(crate) owner: Uuid,
    pub(crate) entity: Uuid,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Who {
    Service,
    Owner,
    Stranger,
}

#[derive(Clone)]
pub(crate) enum Call {
    FindSimilarContent(proto::FindSimilarContentRequest),
    SearchByVector(proto::SearchByVectorRequest),
    UpsertEmbeddings(proto::UpsertEmbeddingsRequest),
    DeleteEmbeddings(proto::DeleteEmbeddingsRequest),
    RecordMetrics(proto::RecordMetricsRequest),
    GetMetricsAggregated(proto::GetMetricsAggregatedRequest),
    UserHasOrgPermission(proto::UserHasOrgPermissionRequest),
    CheckPermissions(proto::CheckPermissionsRequest),
    CreateOrganization(proto::CreateOrganizationRequest),
    ListUserOrganizations(proto::ListUserOrganizationsRequest),
    PutMember(proto::PutMemberRequest),
    RemoveMember(proto::RemoveMemberRequest),
    ListMembers(proto::ListMembersRequest),
    LogAiContext(proto::LogAiContextRequest),
    LogAiContextStream(Vec<proto::LogAiContextRequest>),
    SearchAiContext(proto::SearchAiContextRequest),
    ListAiContext(proto::ListAiContextRequest),
    RecordAiFeedback(proto::RecordAiFeedbackRequest),
    ExportAiContext(proto::ExportAiContextRequest),
    VerifyMigrationIntegrity,
    ArchiveOldMetrics(proto::ArchiveOldMetricsRequest),
}

#[derive(Clone, Debug)]
pub(crate) struct Case(pub(crate) Who, pub(crate) Call);

/// A call as it is reported on failure: the RPC and the request, cut short
/// (a 10 MB field would drown the message).
impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = match self {
            Call::FindSimilarContent(r) => format!("{r:?}"),
            Call::SearchByVector(r) => format!("{r:?}"),
            Call::UpsertEmbeddings(r) => format!("{r:?}"),
            Call::DeleteEmbeddings(r) => format!("{r:?}"),
            Call::RecordMetrics(r) => format!("{r:?}"),
            Call::GetMetricsAggregated(r) => format!("{r:?}"),
            Call::UserHasOrgPermission(r) => format!("{r:?}"),
            Call::CheckPermissions(r) => format!("{r:?}"),
            Call::CreateOrganization(r) => format!("{r:?}"),
            Call::ListUserOrganizations(r) => format!("{r:?}"),
            Call::PutMember(r) => format!("{r:?}"),
            Call::RemoveMember(r) => format!("{r:?}"),
            Call::ListMembers(r) => format!("{r:?}"),
            Call::LogAiContext(r) => format!("{r:?}"),
            Call::LogAiContextStream(r) => format!("{r:?}"),
            Call::SearchAiContext(r) => format!("{r:?}"),
            Call::ListAiContext(r) => format!("{r:?}"),
            Call::RecordAiFeedback(r) => format!("{r:?}"),
            Call::ExportAiContext(r) => format!("{r:?}"),
            Call::VerifyMigrationIntegrity => String::new(),
            Call::ArchiveOldMetrics(r) => format!("{r:?}"),
        };
        let cut: String = body.chars().take(1500).collect();
        write!(f, "{}: {cut}", self.rpc())
    }
}

impl Call {
    pub(crate) fn rpc(&self) -> &'static str {
        match self {
            Call::FindSimilarContent(_) => "FindSimilarContent",
            Call::SearchByVector(_) => "SearchByVector",
            Call::UpsertEmbeddings(_) => "UpsertEmbeddings",
            Call::DeleteEmbeddings(_) => "DeleteEmbeddings",
            Call::RecordMetrics(_) => "RecordMetrics",
            Call::GetMetricsAggregated(_) => "GetMetricsAggregated",
            Call::UserHasOrgPermission(_) => "UserHasOrgPermission",
            Call::CheckPermissions(_) => "CheckPermissions",
            Call::CreateOrganization(_) => "CreateOrganization",
            Call::ListUserOrganizations(_) => "ListUserOrganizations",
            Call::PutMember(_) => "PutMember",
            Call::RemoveMember(_) => "RemoveMember",
            Call::ListMembers(_) => "ListMembers",
            Call::LogAiContext(_) => "LogAiContext",
            Call::LogAiContextStream(_) => "LogAiContextStream",
            Call::SearchAiContext(_) => "SearchAiContext",
            Call::ListAiContext(_) => "ListAiContext",
            Call::RecordAiFeedback(_) => "RecordAiFeedback",
            Call::ExportAiContext(_) => "ExportAiContext",
            Call::VerifyMigrationIntegrity => "VerifyMigrationIntegrity",
            Call::ArchiveOldMetrics(_) => "ArchiveOldMetrics",
        }
    }

    /// The codes the contract README allows for this RPC with a valid token.
    /// RESOURCE_EXHAUSTED is allowed everywhere (size limits apply to every
    /// message); NOT_FOUND too (service_role naming an organization that
    /// does not exist).
    /// The codes the contract's error table allows for this RPC. NOT_FOUND
    /// only where it names it: FindSimilarContent's source without an
    /// embedding, and a service_role write naming an organization that does
    /// not exist (users are checked for membership first and get
    /// PERMISSION_DENIED).
    pub(crate) fn allowed(&self) -> &'static [Code] {
        use Code::*;
        match self {
            Call::FindSimilarContent(_)
            | Call::UpsertEmbeddings(_)
            | Call::RecordMetrics(_)
            | Call::LogAiContext(_)
            | Call::LogAiContextStream(_)
            | Call::RecordAiFeedback(_) => &[
                Ok,
                InvalidArgument,
                NotFound,
                PermissionDenied,
                ResourceExhausted,
            ],
            Call::CreateOrganization(_) => &[
                Ok,
                InvalidArgument,
                PermissionDenied,
                AlreadyExists,
                ResourceExhausted,
            ],
            Call::PutMember(_) | Call::RemoveMember(_) => &[
                Ok,
                InvalidArgument,
                PermissionDenied,
                FailedPrecondition,
                NotFound,
                ResourceExhausted,
            ],
            // query_text on a server without a text model.
            Call::SearchAiContext(_) => &[
                Ok,
                InvalidArgument,
                PermissionDenied,
                FailedPrecondition,
                ResourceExhausted,
            ],
            Call::VerifyMigrationIntegrity => &[Ok, PermissionDenied, ResourceExhausted],
            _ => &[Ok, InvalidArgument, PermissionDenied, ResourceExhausted],
        }
    }
}
