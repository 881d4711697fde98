/* placeholder */ typedef int sdc__placeholder_vae;
