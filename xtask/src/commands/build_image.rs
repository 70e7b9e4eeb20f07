//! `cargo xtask build-image`: build the production image and print its reference on stdout
//! (progress and the build output go to stderr, so `IMAGE=$(cargo xtask build-image)` works).

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{BuildImageArgs, GlobalArgs};
use xtask::docker::{self, local_bases, BuildOptions};
use xtask::project::{state_dir, Env, Project};
use xtask::sys::report::code;

pub fn run(global: &GlobalArgs, args: BuildImageArgs) -> Result<ExitCode> {
    let project = Project::discover(global.prefect_file.as_deref(), Env::Prod)?;
    let mut opts = BuildOptions {
        dry_run: args.dry_run,
        platform: args.platform,
        build_args: args.build_args,
        repository: args.repository,
        fly_app: args.app,
        fly_config: None,
        via_fly: args.fly,
    };
    if args.local_bases {
        let bases = if args.dry_run {
            let tags = local_bases::tags_for(&project.root)?;
            eprintln!(
                "base images (built first when missing): {} and {}",
                tags.rust_offline, tags.python_offline
            );
            local_bases::LocalBases {
                rust_image: tags.rust_offline,
                python_image: tags.python_offline,
            }
        } else {
            let docker = docker::find_docker()?;
            docker::ensure_engine(&docker)?;
            local_bases::ensure(&docker, &project.root, &state_dir().join("docker-bases"))?
        };
        // Appended last so that they win over a RUST_IMAGE/PYTHON_IMAGE given by hand.
        opts.build_args.extend(bases.build_args());
    }
    let started = std::time::Instant::now();
    let image_ref = docker::build_image(&project, &opts)?;
    if opts.dry_run {
        eprintln!("would build {image_ref}");
    } else {
        eprintln!("built {image_ref} in {:.0?}", started.elapsed());
        println!("{image_ref}");
    }
    Ok(ExitCode::from(code::OK))
}
