//! What several benchmarks do alike: an organization through the API, and
//! the Markdown section written where asked.

use std::io::Write as _;
use std::path::Path;

use affinity::proto;
use anyhow::Result;
use uuid::Uuid;

/// A new organization named `name`, owned by `owner`, through the service.
pub async fn organization(
    channel: &tonic::transport::Channel,
    token: &str,
    owner: Uuid,
    name: &str,
) -> Result<Uuid> {
    let mut req = tonic::Request::new(proto::CreateOrganizationRequest {
        name: name.into(),
        slug: format!("bench-{name}-{}", &Uuid::new_v4().simple().to_string()[..8]),
        owner_user_id: owner.to_string(),
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let org = proto::organization_service_client::OrganizationServiceClient::new(channel.clone())
        .create_organization(req)
        .await?
        .into_inner();
    Ok(org.id.parse()?)
}

/// Appends the section to `out`, or prints it when there is none.
pub fn emit(section: &str, out: Option<&Path>) -> Result<()> {
    match out {
        Some(path) => {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)?;
            f.write_all(section.as_bytes())?;
            eprintln!("appended to {}", path.display());
        }
        None => print!("{section}"),
    }
    Ok(())
}
