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
    let infos: Vec<_> = adapters.iter().map(|a| a.get_info()).collect();
    for (k, merged) in gpu::merged_into(&infos).into_iter().enumerate() {
        if let Some(j) = merged {
            println!(
                "gpu:{k} is gpu:{j}'s device under another backend ({:?}; gpu:{j} is {:?}): --device all runs it once, as gpu:{j}",
                infos[k].backend, infos[j].backend
            );
        }
    }
    if !infos.is_empty() && infos.iter().all(gpu::is_cpu_adapter) {
        println!("every adapter is a CPU emulation: --device auto and all run the native engine, which is faster");
    }
    Ok(())
}
