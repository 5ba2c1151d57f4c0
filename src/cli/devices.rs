//! `realnvp devices`: the GPU adapters, numbered for `--device gpu:N`.

use anyhow::Result;

use realnvp::gpu;

pub fn run() -> Result<()> {
    let adapters = gpu::adapters(&gpu::instance());
    if adapters.is_empty() {
        println!("no GPU adapters (install a Vulkan driver, e.g. mesa-vulkan-drivers); --device cpu still works");
    }
    for (i, a) in adapters.iter().enumerate() {
        println!("{}", gpu::describe_adapter(i, a));
    }
    Ok(())
}
