//! GetTopEntities: the items of a type ranked by one metric over a range.

use tonic::Request;

use super::{range, MetricsApi, MAX_METRIC_NAME};
use crate::api::reads::read;
use crate::api::{entity_type, limit, parse_uuid, principal, required_text};
use crate::error::{ApiError, ApiResult};
use crate::proto::{self, TopBy};
use crate::store::metrics::top::{self as store, RankBy, Ranking};
use crate::store::organizations::OrgRole;

/// Items in an answer when the request leaves `max_results` at 0.
const DEFAULT_RESULTS: u32 = 10;

fn rank_by(value: i32) -> ApiResult<RankBy> {
    match TopBy::try_from(value) {
        Ok(TopBy::Unspecified | TopBy::Sum) => Ok(RankBy::Sum),
        Ok(TopBy::Last) => Ok(RankBy::Last),
        Ok(TopBy::Growth) => Ok(RankBy::Growth),
        Err(_) => Err(ApiError::invalid(format!(
            "by {value} is unknown: use TOP_BY_SUM, TOP_BY_LAST or TOP_BY_GROWTH"
        ))),
    }
}

impl MetricsApi {
    pub(super) async fn get_top_entities(
        &self,
        req: Request<proto::GetTopEntitiesRequest>,
    ) -> ApiResult<proto::GetTopEntitiesResponse> {
        let p = principal(&req)?;
        let r = req.get_ref();
        let org = parse_uuid("organization_id", &r.organization_id)?;
        self.state.authorize(&p, org, OrgRole::Viewer).await?;
        let entity_type = entity_type("entity_type", &r.entity_type)?;
        let metric_name = required_text("metric_name", &r.metric_name, MAX_METRIC_NAME)?;
        let by = rank_by(r.by)?;
        let (start, end) = range(r.start.as_ref(), r.end.as_ref())?;
        let limit = limit("max_results", r.max_results, DEFAULT_RESULTS)?;
        let ranking = Ranking {
            org,
            entity_type: &entity_type,
            metric_name,
            by,
            start,
            end,
            limit,
        };
        let ranked = read!(&self.state, &req, |db| Ok(store::top(db, &ranking).await?));
        let entities = ranked
            .into_iter()
            .map(|(id, value)| proto::RankedEntity {
                entity: Some(proto::EntityRef {
                    entity_type: entity_type.clone(),
                    entity_id: id.to_string(),
                }),
                value,
            })
            .collect();
        Ok(proto::GetTopEntitiesResponse { entities })
    }
}
